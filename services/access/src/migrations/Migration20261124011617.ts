import { Migration } from '@mikro-orm/migrations';

export class Migration20261124011617 extends Migration {
  override name = 'Migration20261124011617';

  override up(): void | Promise<void> {
    this.addSql(
      `create table "api_keys" ("id" uuid not null, "bot_id" uuid not null, "prefix" varchar(16) not null, "key_hash" varchar(64) not null, "created_at" timestamptz not null, "last_used_at" timestamptz null, "expires_at" timestamptz null, "revoked_at" timestamptz null, primary key ("id"));`,
    );
    this.addSql(`create index "api_keys_bot_idx" on "api_keys" ("bot_id");`);
    this.addSql(`alter table "api_keys" add constraint "api_keys_hash_key" unique ("key_hash");`);

    this.addSql(
      `create table "bots" ("id" uuid not null, "name" varchar(100) not null, "description" text null, "enabled" boolean not null default true, "owner_id" uuid not null, "created_at" timestamptz not null, "updated_at" timestamptz not null, primary key ("id"));`,
    );
    this.addSql(`create index "bots_owner_idx" on "bots" ("owner_id");`);

    this.addSql(
      `create table "groups" ("id" uuid not null, "name" varchar(100) not null, "remark" text null, "is_default" boolean not null default false, "created_at" timestamptz not null, primary key ("id"));`,
    );
    this.addSql(`create unique index "groups_one_default" on "groups" ("is_default") where "is_default";`);
    this.addSql(`alter table "groups" add constraint "groups_name_key" unique ("name");`);

    this.addSql(
      `create table "memberships" ("group_id" uuid not null, "user_id" uuid not null, "is_group_admin" boolean not null default false, "created_at" timestamptz not null, primary key ("group_id", "user_id"));`,
    );
    this.addSql(`create index "memberships_user_idx" on "memberships" ("user_id", "is_group_admin");`);

    this.addSql(
      `create table "outbox" ("id" uuid not null, "subject" varchar(255) not null, "payload" jsonb not null, "headers" jsonb not null, "created_at" timestamptz not null default now(), "published_at" timestamptz null, primary key ("id"));`,
    );
    this.addSql(`create index "outbox_published_at_id_index" on "outbox" ("published_at", "id");`);

    this.addSql(
      `create table "roles" ("id" uuid not null, "name" varchar(100) not null, "created_at" timestamptz not null, primary key ("id"));`,
    );
    this.addSql(`alter table "roles" add constraint "roles_name_key" unique ("name");`);

    this.addSql(
      `create table "role_grants" ("role_id" uuid not null, "resource_type" varchar(16) not null, "resource_id" varchar(36) not null, "permission" varchar(8) not null, primary key ("role_id", "resource_type", "resource_id"));`,
    );
    this.addSql(
      `create index "role_grants_resource_idx" on "role_grants" ("resource_type", "resource_id", "role_id");`,
    );

    this.addSql(
      `create table "user_roles" ("user_id" uuid not null, "role_id" uuid not null, "created_at" timestamptz not null, primary key ("user_id", "role_id"));`,
    );
    this.addSql(`create index "user_roles_role_idx" on "user_roles" ("role_id");`);
  }

  override down(): void | Promise<void> {
    this.addSql(`drop table if exists "api_keys" cascade;`);
    this.addSql(`drop table if exists "bots" cascade;`);
    this.addSql(`drop table if exists "groups" cascade;`);
    this.addSql(`drop table if exists "memberships" cascade;`);
    this.addSql(`drop table if exists "outbox" cascade;`);
    this.addSql(`drop table if exists "roles" cascade;`);
    this.addSql(`drop table if exists "role_grants" cascade;`);
    this.addSql(`drop table if exists "user_roles" cascade;`);
  }
}
