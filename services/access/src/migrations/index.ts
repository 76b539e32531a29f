import { CursorKeysMigration, OutboxCoalesceMigration, type MigrationEntry } from '@parley/kit/database';
import { Migration20261124010046 } from './Migration20261124010046';
import { Migration20261124011617 } from './Migration20261124011617';
import { Migration20261130150000_login_addresses } from './Migration20261130150000_login_addresses';

/** Every migration of this service, oldest first. `migration:create` writes new ones beside this file. */
export const migrations: MigrationEntry[] = [
  { name: 'Migration20261124010046', class: Migration20261124010046 },
  { name: 'Migration20261124011617', class: Migration20261124011617 },
  { name: 'Migration20261130140000_cursor_keys', class: CursorKeysMigration },
  { name: 'Migration20261130163000_outbox_coalesce', class: OutboxCoalesceMigration },
  { name: 'Migration20261130150000_login_addresses', class: Migration20261130150000_login_addresses },
];
