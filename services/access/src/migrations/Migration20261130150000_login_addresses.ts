import { Migration } from '@mikro-orm/migrations';

export class Migration20261130150000_login_addresses extends Migration {
  override name = 'Migration20261130150000_login_addresses';

  override up(): void | Promise<void> {
    this.addSql(
      `create table "login_addresses" ("user_id" uuid not null, "address" varchar(64) not null, "last_success_at" timestamptz not null, primary key ("user_id", "address"));`,
    );
  }

  override down(): void | Promise<void> {
    this.addSql(`drop table if exists "login_addresses" cascade;`);
  }
}
