import { CursorKeysMigration, OutboxCoalesceMigration, type MigrationEntry } from '@parley/kit/database';
import { Migration20261124005802 } from './Migration20261124005802';
import { Migration20261124015509 } from './Migration20261124015509';

/** Every migration of this service, oldest first. `migration:create` writes new ones beside this file. */
export const migrations: MigrationEntry[] = [
  { name: 'Migration20261124005802', class: Migration20261124005802 },
  { name: 'Migration20261124015509', class: Migration20261124015509 },
  { name: 'Migration20261130140000_cursor_keys', class: CursorKeysMigration },
  { name: 'Migration20261130163000_outbox_coalesce', class: OutboxCoalesceMigration },
];
