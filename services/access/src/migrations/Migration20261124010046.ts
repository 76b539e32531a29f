import { Migration } from '@mikro-orm/migrations';

export class Migration20261124010046 extends Migration {
  override name = 'Migration20261124010046';

  override up(): void | Promise<void> {
    this.addSql(
      `create table "refresh_tokens" ("id" uuid not null, "user_id" uuid not null, "token_hash" varchar(64) not null, "expires_at" timestamptz not null, "revoked_at" timestamptz null, "created_at" timestamptz not null, primary key ("id"));`,
    );
    this.addSql(`create index "refresh_tokens_user_idx" on "refresh_tokens" ("user_id");`);
    this.addSql(`alter table "refresh_tokens" add constraint "refresh_tokens_hash_key" unique ("token_hash");`);

    this.addSql(
      `create table "signing_keys" ("kid" varchar(64) not null, "private_jwk" jsonb not null, "public_jwk" jsonb not null, "created_at" timestamptz not null, primary key ("kid"));`,
    );

    this.addSql(
      `create table "users" ("id" uuid not null, "username" varchar(64) not null, "email" varchar(320) null, "password_hash" text not null, "enabled" boolean not null default true, "is_admin" boolean not null default false, "created_at" timestamptz not null, "updated_at" timestamptz not null, primary key ("id"));`,
    );
    this.addSql(`alter table "users" add constraint "users_username_key" unique ("username");`);
  }
}
