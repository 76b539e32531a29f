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
    /**
     * The message's JSON as lists answer it, in bytes, fixed at insert (never less than it can
     * become: feedback, copied and sensitive_status are counted at their widest). Pages add
     * these up in SQL to stay within MESSAGE_PAGE_BYTES without reading the rows they leave out.
     */
    sizeBytes: p.integer(),
  },
  uniques: [
    { name: 'messages_session_seq_key', properties: ['sessionId', 'seq'] },
    { name: 'messages_session_client_id_key', properties: ['sessionId', 'clientMessageId'] },
  ],
  indexes: [
    // English words: full-text on the 'simple' configuration; Chinese and other substrings: trigrams.
    {
      name: 'messages_content_fts_idx',
      expression: `create index "messages_content_fts_idx" on "messages" using gin (to_tsvector('simple', "content"))`,
    },
    {
      name: 'messages_content_trgm_idx',
      expression: 'create index "messages_content_trgm_idx" on "messages" using gin ("content" public.gin_trgm_ops)',
    },
  ],
});
export type Message = InferEntity<typeof MessageEntity>;

/**
 * Who may read a session, as the session service last announced it: kept here so that
 * search and listing can respect rights without a query across schemas, and so that the
 * owner's appends and reads need no question to the session service (decision 0023).
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
    /**
     * The session's status as its last event said (`active`, `archived`), `deleted` once its
     * deletion was applied (the row stays as a tombstone), null when not known: only `active`
     * lets an append through without asking the session service.
     */
    status: p.string().length(16).nullable(),
    /** When the event that last changed the scope occurred: an older event changes nothing. */
    scopeAt: p.datetime().nullable(),
    /**
     * Set by the session service before a change to the session commits: until the event of
     * that change (occurred at this time, or later) arrives, every right is asked of the
     * session service.
     */
    fencedUntil: p.datetime().nullable(),
    /** The last `seq` given out: appends lock this row, so seq is gapless under concurrency. */
    lastSeq: p.integer().default(0),
    /** Counters kept with each change and announced as absolute values with this version. */
    statsVersion: p.integer().default(0),
    messageCount: p.integer().default(0),
    likeCount: p.integer().default(0),
    dislikeCount: p.integer().default(0),
    copiedCount: p.integer().default(0),
    passCount: p.integer().default(0),
    violationCount: p.integer().default(0),
    lastMessageAt: p.datetime().nullable(),
  },
  indexes: [
    { name: 'session_scopes_user_idx', properties: ['userId'] },
    { name: 'session_scopes_bot_idx', properties: ['botId'] },
    {
      name: 'session_scopes_groups_idx',
      expression: 'create index "session_scopes_groups_idx" on "session_scopes" using gin ("group_ids")',
    },
  ],
});
export type SessionScope = InferEntity<typeof SessionScopeEntity>;
