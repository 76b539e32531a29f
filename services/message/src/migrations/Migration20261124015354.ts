import { Migration } from '@mikro-orm/migrations';

export class Migration20261124015354 extends Migration {
  override name = 'Migration20261124015354';

  override up(): void | Promise<void> {
    // Trigram search needs pg_trgm; extensions are database-wide, so it lives in public.
    this.addSql(`create extension if not exists pg_trgm with schema public;`);
    this.addSql(
      `create table "outbox" ("id" uuid not null, "subject" varchar(255) not null, "payload" jsonb not null, "headers" jsonb not null, "created_at" timestamptz not null default now(), "published_at" timestamptz null, primary key ("id"));`,
    );
    this.addSql(`create index "outbox_published_at_id_index" on "outbox" ("published_at", "id");`);

    this.addSql(`create index "messages_content_fts_idx" on "messages" using gin (to_tsvector('simple', "content"));`);
    this.addSql(`create index "messages_content_trgm_idx" on "messages" using gin ("content" public.gin_trgm_ops);`);

    this.addSql(
      `alter table "session_scopes" add "last_seq" int not null default 0, add "stats_version" int not null default 0, add "message_count" int not null default 0, add "like_count" int not null default 0, add "dislike_count" int not null default 0, add "copied_count" int not null default 0, add "pass_count" int not null default 0, add "violation_count" int not null default 0, add "last_message_at" timestamptz null;`,
    );
    this.addSql(`create index "session_scopes_user_idx" on "session_scopes" ("user_id");`);
    this.addSql(`create index "session_scopes_bot_idx" on "session_scopes" ("bot_id");`);
    this.addSql(`create index "session_scopes_groups_idx" on "session_scopes" using gin ("group_ids");`);
  }

  override down(): void | Promise<void> {
    this.addSql(`drop table if exists "outbox" cascade;`);

    this.addSql(`drop index "messages_content_fts_idx";`);
    this.addSql(`drop index "messages_content_trgm_idx";`);

    this.addSql(`drop index "session_scopes_user_idx";`);
    this.addSql(`drop index "session_scopes_bot_idx";`);
    this.addSql(`drop index "session_scopes_groups_idx";`);
    this.addSql(
      `alter table "session_scopes" drop column "last_seq", drop column "stats_version", drop column "message_count", drop column "like_count", drop column "dislike_count", drop column "copied_count", drop column "pass_count", drop column "violation_count", drop column "last_message_at";`,
    );
  }
}
