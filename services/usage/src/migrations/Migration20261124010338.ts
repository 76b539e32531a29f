import { Migration } from '@mikro-orm/migrations';

export class Migration20261124010338 extends Migration {
  override name = 'Migration20261124010338';

  override up(): void | Promise<void> {
    this.addSql(
      `create table "usage_records" ("bot_id" uuid not null, "request_id" varchar(200) not null, "session_id" uuid null, "user_id" uuid null, "channel" varchar(64) null, "status" varchar(16) not null, "provider" varchar(64) null, "model" varchar(128) null, "input_tokens" bigint not null default '0', "output_tokens" bigint not null default '0', "total_tokens" bigint not null default '0', "started_at" timestamptz not null, "completed_at" timestamptz null, "cost" numeric(20,10) null, "currency" varchar(3) null, "created_at" timestamptz not null, "updated_at" timestamptz not null, primary key ("bot_id", "request_id"));`,
    );
    this.addSql(`create index "usage_records_bot_started_idx" on "usage_records" ("bot_id", "started_at");`);
    this.addSql(`create index "usage_records_session_idx" on "usage_records" ("session_id");`);
  }
}
