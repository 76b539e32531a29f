import { CursorKeysMigration, OutboxCoalesceMigration, type MigrationEntry } from '@parley/kit/database';
import { Migration20261124010330 } from './Migration20261124010330';
import { Migration20261124015354 } from './Migration20261124015354';
import { Migration20261130104500 } from './Migration20261130104500';
import { Migration20261130160000 } from './Migration20261130160000';

/** Every migration of this service, oldest first. `migration:create` writes new ones beside this file. */
export const migrations: MigrationEntry[] = [
  { name: 'Migration20261124010330', class: Migration20261124010330 },
  { name: 'Migration20261124015354', class: Migration20261124015354 },
  { name: 'Migration20261130104500', class: Migration20261130104500 },
  { name: 'Migration20261130140000_cursor_keys', class: CursorKeysMigration },
  { name: 'Migration20261130160000', class: Migration20261130160000 },
  { name: 'Migration20261130163000_outbox_coalesce', class: OutboxCoalesceMigration },
];
