import { Migration } from '@mikro-orm/migrations';

export class Migration20261124010330 extends Migration {
  override name = 'Migration20261124010330';

  override up(): void | Promise<void> {
    this.addSql(
      `create table "messages" ("id" uuid not null, "session_id" uuid not null, "seq" int not null, "role" varchar(16) not null, "content" text not null, "tokens" int not null default 0, "metadata" jsonb not null, "media" jsonb not null, "feedback" varchar(8) null, "copied" boolean not null default false, "sensitive_status" varchar(16) not null default 'unchecked', "client_message_id" varchar(128) null, "created_at" timestamptz not null, primary key ("id"));`,
    );
    this.addSql(`alter table "messages" add constraint "messages_session_seq_key" unique ("session_id", "seq");`);
    this.addSql(
      `alter table "messages" add constraint "messages_session_client_id_key" unique ("session_id", "client_message_id");`,
    );

    this.addSql(
      `create table "session_scopes" ("session_id" uuid not null, "user_id" uuid not null, "bot_id" uuid null, "group_ids" uuid[] not null, "updated_at" timestamptz not null, primary key ("session_id"));`,
    );
  }
}
