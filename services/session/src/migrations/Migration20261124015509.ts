import { Migration } from '@mikro-orm/migrations';

export class Migration20261124015509 extends Migration {
  override name = 'Migration20261124015509';

  override up(): void | Promise<void> {
    this.addSql(`alter table "sessions" add "stats_version" int not null default 0;`);
  }

  override down(): void | Promise<void> {
    this.addSql(`alter table "sessions" drop column "stats_version";`);
  }
}
