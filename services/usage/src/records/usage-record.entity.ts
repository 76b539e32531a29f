import { defineEntity, p, type InferEntity } from '@mikro-orm/postgresql';

/**
 * One LLM request as a bot reported it; `(bot_id, request_id)` is its identity. `started_at`
 * is fixed by the first report, so the hour a request is counted in never moves.
 */
export const UsageRecordEntity = defineEntity({
  name: 'UsageRecord',
  tableName: 'usage_records',
  properties: {
    botId: p.uuid().primary(),
    requestId: p.string().length(200).primary(),
    sessionId: p.uuid().nullable(),
    userId: p.uuid().nullable(),
    channel: p.string().length(64).nullable(),
    status: p.string().length(16),
    provider: p.string().length(64).nullable(),
    model: p.string().length(128).nullable(),
    inputTokens: p.bigint('number').default(0),
    outputTokens: p.bigint('number').default(0),
    totalTokens: p.bigint('number').default(0),
    startedAt: p.datetime(),
    completedAt: p.datetime().nullable(),
    /** Exact: tokens times the price in force at `started_at`; null when unpriced. */
    cost: p.decimal('string').columnType('numeric').nullable(),
    currency: p.string().length(3).nullable(),
    priceId: p.uuid().nullable(),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
  },
  indexes: [
    { name: 'usage_records_bot_started_idx', properties: ['botId', 'startedAt'] },
    { name: 'usage_records_started_idx', properties: ['startedAt'] },
    {
      name: 'usage_records_session_idx',
      expression:
        'create index "usage_records_session_idx" on "usage_records" ("session_id", "started_at") where "session_id" is not null',
    },
    {
      name: 'usage_records_user_idx',
      expression:
        'create index "usage_records_user_idx" on "usage_records" ("user_id", "started_at") where "user_id" is not null',
    },
  ],
});
export type UsageRecord = InferEntity<typeof UsageRecordEntity>;

/**
 * Usage per UTC hour and bot, provider, model, channel, status and currency, kept by the
 * consumer in the same transaction as the records. A dimension the bot did not report is
 * '' here (so it can be part of the key), null on the wire.
 */
export const UsageHourlyEntity = defineEntity({
  name: 'UsageHourly',
  tableName: 'usage_hourly',
  properties: {
    hour: p.datetime().primary(),
    botId: p.uuid().primary(),
    provider: p.string().length(64).primary(),
    model: p.string().length(128).primary(),
    channel: p.string().length(64).primary(),
    status: p.string().length(16).primary(),
    currency: p.string().length(3).primary(),
    requests: p.bigint('number').default(0),
    inputTokens: p.bigint('number').default(0),
    outputTokens: p.bigint('number').default(0),
    totalTokens: p.bigint('number').default(0),
    cost: p.decimal('string').columnType('numeric').default(0),
    unpricedRequests: p.bigint('number').default(0),
  },
  indexes: [{ name: 'usage_hourly_bot_hour_idx', properties: ['botId', 'hour'] }],
});
export type UsageHourly = InferEntity<typeof UsageHourlyEntity>;

/** Usage per bot, UTC day and currency ('' when unpriced): what quotas and budgets add up. */
export const UsageDailyEntity = defineEntity({
  name: 'UsageDaily',
  tableName: 'usage_daily',
  properties: {
    botId: p.uuid().primary(),
    day: p.date().primary(),
    currency: p.string().length(3).primary(),
    requests: p.bigint('number').default(0),
    totalTokens: p.bigint('number').default(0),
    cost: p.decimal('string').columnType('numeric').default(0),
    /** Bumped by every write: orders the totals the quota counters are given. */
    revision: p.bigint('string').default(0),
  },
});
export type UsageDaily = InferEntity<typeof UsageDailyEntity>;
