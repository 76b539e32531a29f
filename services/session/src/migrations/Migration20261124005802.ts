import { Migration } from '@mikro-orm/migrations';

export class Migration20261124005802 extends Migration {
  override name = 'Migration20261124005802';

  override up(): void | Promise<void> {
    this.addSql(
      `create table "outbox" ("id" uuid not null, "subject" varchar(255) not null, "payload" jsonb not null, "headers" jsonb not null, "created_at" timestamptz not null default now(), "published_at" timestamptz null, primary key ("id"));`,
    );
    this.addSql(`create index "outbox_published_at_id_index" on "outbox" ("published_at", "id");`);

    this.addSql(
      `create table "sessions" ("id" uuid not null, "user_id" uuid not null, "bot_id" uuid null, "title" text null, "status" varchar(16) not null default 'active', "group_ids" uuid[] not null, "metadata" jsonb not null, "state" jsonb not null, "message_count" int not null default 0, "like_count" int not null default 0, "dislike_count" int not null default 0, "copied_count" int not null default 0, "sensitive_status" varchar(16) not null default 'unchecked', "last_message_at" timestamptz null, "last_activity_at" timestamptz not null, "created_at" timestamptz not null, "updated_at" timestamptz not null, primary key ("id"));`,
    );
    this.addSql(`create index "sessions_user_activity_idx" on "sessions" ("user_id", "last_activity_at", "id");`);
    this.addSql(`create index "sessions_bot_activity_idx" on "sessions" ("bot_id", "last_activity_at", "id");`);
  }
}
