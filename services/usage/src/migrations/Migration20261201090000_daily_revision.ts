import { Migration } from '@mikro-orm/migrations';

export class Migration20261201090000_daily_revision extends Migration {
  override name = 'Migration20261201090000_daily_revision';

  override up(): void | Promise<void> {
    // Bumped by every write to the row: the quota counters in Redis keep the newest totals
    // they were given, whatever order the bumps and the rebuilds from here reach them in.
    this.addSql(`alter table "usage_daily" add "revision" bigint not null default 0;`);
  }

  override down(): void | Promise<void> {
    this.addSql(`alter table "usage_daily" drop column "revision";`);
  }
}
