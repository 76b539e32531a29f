import { CursorKeysMigration, OutboxCoalesceMigration, type MigrationEntry } from '@parley/kit/database';
import { Migration20261124010338 } from './Migration20261124010338';
import { Migration20261124082546 } from './Migration20261124082546';
import { Migration20261201090000_daily_revision } from './Migration20261201090000_daily_revision';

/** Every migration of this service, oldest first. `migration:create` writes new ones beside this file. */
export const migrations: MigrationEntry[] = [
  { name: 'Migration20261124010338', class: Migration20261124010338 },
  { name: 'Migration20261124082546', class: Migration20261124082546 },
  { name: 'Migration20261130140000_cursor_keys', class: CursorKeysMigration },
  { name: 'Migration20261130163000_outbox_coalesce', class: OutboxCoalesceMigration },
  { name: 'Migration20261201090000_daily_revision', class: Migration20261201090000_daily_revision },
];
