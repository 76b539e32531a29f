import { defineEntity, p, type InferEntity } from '@mikro-orm/postgresql';

/** One LLM request as a bot reported it; `(bot_id, request_id)` is its identity. */
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
    cost: p.decimal('string').precision(20).scale(10).nullable(),
    currency: p.string().length(3).nullable(),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
  },
  indexes: [
    { name: 'usage_records_bot_started_idx', properties: ['botId', 'startedAt'] },
    { name: 'usage_records_session_idx', properties: ['sessionId'] },
  ],
});
export type UsageRecord = InferEntity<typeof UsageRecordEntity>;
