import { defineEntity, p, type InferEntity } from '@mikro-orm/postgresql';
import type { JsonObject } from '@parley/contracts';

/** One row per message, never a conversation blob. */
export const MessageEntity = defineEntity({
  name: 'Message',
  tableName: 'messages',
  properties: {
    id: p.uuid().primary(),
    sessionId: p.uuid(),
    seq: p.integer(),
    role: p.string().length(16),
    content: p.text(),
    tokens: p.integer().default(0),
    metadata: p.json<JsonObject>(),
    media: p.json<unknown[]>(),
    feedback: p.string().length(8).nullable(),
    copied: p.boolean().default(false),
    sensitiveStatus: p.string().length(16).default('unchecked'),
    clientMessageId: p.string().length(128).nullable(),
    createdAt: p.datetime(),
  },
  uniques: [
    { name: 'messages_session_seq_key', properties: ['sessionId', 'seq'] },
    { name: 'messages_session_client_id_key', properties: ['sessionId', 'clientMessageId'] },
  ],
});
export type Message = InferEntity<typeof MessageEntity>;

/**
 * Who may read a session, as the session service last announced it: kept here so that
 * search and listing can respect rights without a query across schemas.
 */
export const SessionScopeEntity = defineEntity({
  name: 'SessionScope',
  tableName: 'session_scopes',
  properties: {
    sessionId: p.uuid().primary(),
    userId: p.uuid(),
    botId: p.uuid().nullable(),
    groupIds: p.array<string>().columnType('uuid[]'),
    updatedAt: p.datetime(),
  },
});
export type SessionScope = InferEntity<typeof SessionScopeEntity>;
