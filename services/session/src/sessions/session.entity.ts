import { defineEntity, p, type InferEntity } from '@mikro-orm/postgresql';
import type { JsonObject } from '@parley/contracts';

export const SessionEntity = defineEntity({
  name: 'Session',
  tableName: 'sessions',
  properties: {
    id: p.uuid().primary(),
    userId: p.uuid(),
    botId: p.uuid().nullable(),
    title: p.text().nullable(),
    status: p.string().length(16).default('active'),
    groupIds: p.array<string>().columnType('uuid[]'),
    metadata: p.json<JsonObject>(),
    state: p.json<JsonObject>(),
    messageCount: p.integer().default(0),
    likeCount: p.integer().default(0),
    dislikeCount: p.integer().default(0),
    copiedCount: p.integer().default(0),
    sensitiveStatus: p.string().length(16).default('unchecked'),
    lastMessageAt: p.datetime().nullable(),
    /** Version of the message counters last applied (from `evt.message.stats`). */
    statsVersion: p.integer().default(0),
    /** Sort key of "newest activity first": creation, an update, or the last message. */
    lastActivityAt: p.datetime(),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
  },
  indexes: [
    { name: 'sessions_user_activity_idx', properties: ['userId', 'lastActivityAt', 'id'] },
    { name: 'sessions_bot_activity_idx', properties: ['botId', 'lastActivityAt', 'id'] },
  ],
});

export type Session = InferEntity<typeof SessionEntity>;
