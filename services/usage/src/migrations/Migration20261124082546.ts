import { Migration } from '@mikro-orm/migrations';

export class Migration20261124082546 extends Migration {
  override name = 'Migration20261124082546';

  override up(): void | Promise<void> {
    this.addSql(
      `create table "activity_events" ("bot_id" uuid not null, "event_id" varchar(200) not null, "request_id" varchar(200) null, "event_type" varchar(64) not null, "channel" varchar(64) null, "detail" text null, "metadata" jsonb null, "occurred_at" timestamptz not null, "received_at" timestamptz not null, primary key ("bot_id", "event_id"));`,
    );
    this.addSql(
      `create index "activity_events_bot_time_idx" on "activity_events" ("bot_id", "occurred_at" desc, "event_id" desc);`,
    );
    this.addSql(
      `create index "activity_events_bot_type_time_idx" on "activity_events" ("bot_id", "event_type", "occurred_at" desc, "event_id" desc);`,
    );

    this.addSql(
      `create table "usage_budgets" ("bot_id" uuid not null, "period" varchar(8) not null, "max_tokens" bigint null, "max_cost" numeric null, "currency" varchar(3) not null, "updated_at" timestamptz not null, primary key ("bot_id"));`,
    );

    this.addSql(
      `create table "usage_budget_alerts" ("bot_id" uuid not null, "period" varchar(8) not null, "period_start" timestamptz not null, "created_at" timestamptz not null, primary key ("bot_id", "period", "period_start"));`,
    );

    this.addSql(
      `create table "outbox" ("id" uuid not null, "subject" varchar(255) not null, "payload" jsonb not null, "headers" jsonb not null, "created_at" timestamptz not null default now(), "published_at" timestamptz null, primary key ("id"));`,
    );
    this.addSql(`create index "outbox_published_at_id_index" on "outbox" ("published_at", "id");`);

    this.addSql(
      `create table "usage_prices" ("id" uuid not null, "provider" varchar(64) not null, "model" varchar(128) not null, "input_per_million" numeric not null, "output_per_million" numeric not null, "currency" varchar(3) not null, "effective_from" timestamptz not null, "created_at" timestamptz not null, "updated_at" timestamptz not null, primary key ("id"));`,
    );
    this.addSql(
      `alter table "usage_prices" add constraint "usage_prices_version_key" unique ("provider", "model", "effective_from");`,
    );

    this.addSql(
      `create table "usage_reprice_jobs" ("id" uuid not null, "provider" varchar(64) not null, "model" varchar(128) not null, "from_at" timestamptz not null, "until_at" timestamptz null, "after_started_at" timestamptz null, "after_bot_id" uuid null, "after_request_id" varchar(200) null, "created_at" timestamptz not null, primary key ("id"));`,
    );

    this.addSql(
      `create table "usage_daily" ("bot_id" uuid not null, "day" date not null, "currency" varchar(3) not null, "requests" bigint not null default '0', "total_tokens" bigint not null default '0', "cost" numeric not null default 0, primary key ("bot_id", "day", "currency"));`,
    );

    this.addSql(
      `create table "usage_hourly" ("hour" timestamptz not null, "bot_id" uuid not null, "provider" varchar(64) not null, "model" varchar(128) not null, "channel" varchar(64) not null, "status" varchar(16) not null, "currency" varchar(3) not null, "requests" bigint not null default '0', "input_tokens" bigint not null default '0', "output_tokens" bigint not null default '0', "total_tokens" bigint not null default '0', "cost" numeric not null default 0, "unpriced_requests" bigint not null default '0', primary key ("hour", "bot_id", "provider", "model", "channel", "status", "currency"));`,
    );
    this.addSql(`create index "usage_hourly_bot_hour_idx" on "usage_hourly" ("bot_id", "hour");`);

    this.addSql(`alter table "usage_records" add "price_id" uuid null;`);
    this.addSql(`alter table "usage_records" alter column "cost" type numeric using ("cost"::numeric);`);
    this.addSql(`create index "usage_records_started_idx" on "usage_records" ("started_at");`);
    this.addSql(
      `create index "usage_records_user_idx" on "usage_records" ("user_id", "started_at") where "user_id" is not null;`,
    );
    // Records of a session, newest first; most records name no session.
    this.addSql(`drop index "usage_records_session_idx";`);
    this.addSql(
      `create index "usage_records_session_idx" on "usage_records" ("session_id", "started_at") where "session_id" is not null;`,
    );
  }

  override down(): void | Promise<void> {
    this.addSql(`drop table if exists "activity_events" cascade;`);
    this.addSql(`drop table if exists "usage_budgets" cascade;`);
    this.addSql(`drop table if exists "usage_budget_alerts" cascade;`);
    this.addSql(`drop table if exists "outbox" cascade;`);
    this.addSql(`drop table if exists "usage_prices" cascade;`);
    this.addSql(`drop table if exists "usage_reprice_jobs" cascade;`);
    this.addSql(`drop table if exists "usage_daily" cascade;`);
    this.addSql(`drop table if exists "usage_hourly" cascade;`);

    this.addSql(`drop index "usage_records_started_idx";`);
    this.addSql(`drop index "usage_records_user_idx";`);
    this.addSql(`drop index "usage_records_session_idx";`);
    this.addSql(`create index "usage_records_session_idx" on "usage_records" ("session_id");`);
    this.addSql(`alter table "usage_records" drop column "price_id";`);
    this.addSql(`alter table "usage_records" alter column "cost" type numeric(20,10) using ("cost"::numeric(20,10));`);
  }
}
