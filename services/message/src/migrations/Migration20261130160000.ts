import { Migration } from '@mikro-orm/migrations';

export class Migration20261130160000 extends Migration {
  override name = 'Migration20261130160000';

  override up(): void | Promise<void> {
    // Rows from before have no status: the copy cannot decide for them until an event or the
    // session service's answer tells it (decision 0023).
    this.addSql(
      `alter table "session_scopes" add "status" varchar(16) null, add "scope_at" timestamptz null, add "fenced_until" timestamptz null;`,
    );
  }

  override down(): void | Promise<void> {
    this.addSql(
      `alter table "session_scopes" drop column "status", drop column "scope_at", drop column "fenced_until";`,
    );
  }
}
