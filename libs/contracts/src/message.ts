import { z } from 'zod';
import { rpc } from './rpc';
import { PrincipalSchema } from './principal';
import { BoundedJsonObjectSchema, JsonObjectSchema, TimestampSchema, jsonBytes } from './common';
import { tooLarge } from './errors';
import { CursorSchema, cursorPageSchema, offsetPageSchema, PageRequestSchema } from './pagination';
import { INT32_MAX, MAX_ID_LIST, dateTime, int, int32, list, text } from './input';
import { FEEDBACK_VALUES, SENSITIVE_STATUSES, SESSION_STATUSES } from './session';

export const MESSAGE_ROLES = ['user', 'assistant', 'system', 'tool'] as const;

/*
 * Size limits (API.md), in UTF-8 bytes. The schemas below enforce them, so they hold at the
 * gateway and again at the message service's NATS boundary: beyond one, 413 naming the field.
 * Together they bound what a message can weigh on the wire, which is what keeps every
 * request and reply under NATS's 1 MiB max_payload.
 */
/** A message's `content`. */
export const MAX_CONTENT_BYTES = 256 * 1024;
/** A message's `media` list, as JSON. */
export const MAX_MEDIA_BYTES = 64 * 1024;
export const MAX_MEDIA_ENTRIES = 100;
export const MAX_CLIENT_MESSAGE_ID_LENGTH = 128;
export const MAX_BATCH_MESSAGES = 500;
/** A batch's messages together, measured as their JSON array (after defaults such as `tokens: 0`). */
export const MAX_BATCH_BYTES = 768 * 1024;
/**
 * A batch's answer. Fresh messages add a bounded overhead each (id, seq, timestamps, flags), so a
 * batch within MAX_BATCH_BYTES always answers within this; only messages named by a
 * `client_message_id` used before, which answer as stored, can go beyond, and that batch is 413.
 */
export const MAX_BATCH_REPLY_BYTES = 960 * 1024;
/**
 * A page of messages (lists, search, `after`) holds items while their JSON adds up to at most
 * this, and always at least one: with the limits above, one reply stays well under 1 MiB.
 */
export const MESSAGE_PAGE_BYTES = 512 * 1024;
/** `tokens` is 0 … 2^31−1 (API.md). */
export const MAX_TOKENS = INT32_MAX;
/** Most ids in a read scope: as many as fit in one NATS message. */
export const MAX_SCOPE_IDS = 20_000;

export const MediaSchema = z
  .object({
    type: text({ min: 1, max: 100, noControl: true }),
    url: text({ min: 1, max: 4096, noControl: true }),
    name: text({ max: 500 }).optional(),
    /** In bytes. */
    size: int({ min: 0, max: Number.MAX_SAFE_INTEGER }).optional(),
  })
  .strict();

export const MessageSchema = z.object({
  id: z.uuid(),
  session_id: z.uuid(),
  seq: z.number().int(),
  role: z.enum(MESSAGE_ROLES),
  content: z.string(),
  tokens: z.number().int(),
  metadata: JsonObjectSchema,
  media: z.array(MediaSchema),
  feedback: z.enum(FEEDBACK_VALUES).nullable(),
  copied: z.boolean(),
  sensitive_status: z.enum(SENSITIVE_STATUSES),
  client_message_id: z.string().nullable(),
  created_at: TimestampSchema,
});
export type Message = z.infer<typeof MessageSchema>;

export const NewMessageSchema = z
  .object({
    role: z.enum(MESSAGE_ROLES, { error: `one of ${MESSAGE_ROLES.join(', ')}` }),
    content: text({ max: MAX_CONTENT_BYTES, maxBytes: MAX_CONTENT_BYTES }),
    tokens: int32({ min: 0, max: MAX_TOKENS }).default(0),
    metadata: BoundedJsonObjectSchema.optional(),
    media: list(MediaSchema, { max: MAX_MEDIA_ENTRIES })
      .refine((v) => jsonBytes(v) <= MAX_MEDIA_BYTES, tooLarge('larger than 64 KiB as JSON'))
      .meta({ 'x-max-bytes': MAX_MEDIA_BYTES })
      .optional(),
    client_message_id: text({ min: 1, max: MAX_CLIENT_MESSAGE_ID_LENGTH, noControl: true }).optional(),
  })
  .strict();
export type NewMessage = z.input<typeof NewMessageSchema>;

const NewMessagesSchema = list(NewMessageSchema, { min: 1, max: MAX_BATCH_MESSAGES })
  .refine((v) => jsonBytes(v) <= MAX_BATCH_BYTES, tooLarge('larger than 768 KiB together'))
  .meta({ 'x-max-bytes': MAX_BATCH_BYTES });

export const BatchBodySchema = z.object({ messages: NewMessagesSchema }).strict();

export const MessageListQuerySchema = z.object({ order: z.enum(['asc', 'desc']).default('asc') });

export const FeedbackBodySchema = z
  .object({ feedback: z.enum(FEEDBACK_VALUES).nullable(), copied: z.literal(true).optional() })
  .strict();
export const SensitiveBodySchema = z.object({ sensitive_status: z.enum(SENSITIVE_STATUSES) }).strict();

export const SearchQuerySchema = z.object({
  q: text({ trim: true, min: 2, max: 200 }),
  bot_id: z.uuid().optional(),
  session_id: z.uuid().optional(),
});
export const SearchHitSchema = MessageSchema.extend({ rank: z.number() });

/**
 * A page of messages. With a cursor: `{ items, next_cursor }`. With page/size: `{ items, total,
 * page, size }`, and when the page's messages do not all fit in MESSAGE_PAGE_BYTES it holds the
 * first of them and adds `next_cursor`: a cursor (same order) continuing after its last item, to
 * read the rest of that page with `cursor` and `limit`. The page/size form comes first: a page
 * carrying both would otherwise lose total, page and size to the cursor form.
 */
export const MessagePageSchema = z.union([
  offsetPageSchema(MessageSchema).extend({
    next_cursor: z
      .string()
      .optional()
      .describe('only when the page was cut short by size: a cursor continuing after its last item'),
  }),
  cursorPageSchema(MessageSchema),
]);
export type MessagePage = z.infer<typeof MessagePageSchema>;

/** The session facts the message service needs to accept a write: from the session service, authoritative. */
export const SessionAccessSchema = z.object({
  id: z.uuid(),
  user_id: z.uuid(),
  bot_id: z.uuid().nullable(),
  group_ids: z.array(z.uuid()),
  status: z.enum(SESSION_STATUSES),
});

/** What the session's counters are after a change, as absolute values with a version. */
export const MessageStatsSchema = z.object({
  session_id: z.uuid(),
  version: z.number().int(),
  message_count: z.number().int(),
  like_count: z.number().int(),
  dislike_count: z.number().int(),
  copied_count: z.number().int(),
  sensitive_status: z.enum(SENSITIVE_STATUSES),
  last_message_at: TimestampSchema.nullable(),
});
export type MessageStats = z.infer<typeof MessageStatsSchema>;

/** Who may read what, for search: the caller's readable scope as the access service knows it. */
const scopeIds = list(z.uuid(), { max: MAX_SCOPE_IDS });
export const ReadScopeSchema = z.object({
  all: z.boolean(),
  user_id: z.uuid().nullable(),
  group_ids: scopeIds,
  bot_ids: scopeIds,
  session_ids: scopeIds,
});
export type ReadScope = z.infer<typeof ReadScopeSchema>;

const actor = { actor: PrincipalSchema };
const sessionRef = { ...actor, session_id: z.uuid() };

export const SessionAccessRpc = rpc(
  'session.sessions.authorize',
  z.object({ ...actor, id: z.uuid(), action: z.enum(['read', 'write', 'manage']) }),
  SessionAccessSchema,
);

/**
 * Sent by the session service inside the transaction that changes or deletes a session,
 * before it commits: every message-service instance then asks the session service for every
 * right on the session until the change's own event (which occurred at `until`, or later)
 * has been applied to its copy. So once the change has returned, no append or read goes by
 * the copy from before it. The reply comes once the fence is stored.
 */
export const SessionScopeFenceRpc = rpc(
  'message.scopes.fence',
  z.object({
    session_id: z.uuid(),
    user_id: z.uuid(),
    bot_id: z.uuid().nullable(),
    group_ids: list(z.uuid(), { max: MAX_ID_LIST }),
    until: dateTime(),
  }),
  z.object({ session_id: z.uuid() }),
);

export const MessageRpc = {
  append: rpc(
    'message.messages.append',
    z.object({ ...sessionRef, message: NewMessageSchema }),
    z.object({ created: z.boolean(), message: MessageSchema }),
  ),
  appendBatch: rpc(
    'message.messages.append_batch',
    z.object({ ...sessionRef, messages: NewMessagesSchema }),
    z.object({ items: z.array(MessageSchema) }),
  ),
  list: rpc(
    'message.messages.list',
    z.object({ ...sessionRef, order: z.enum(['asc', 'desc']).default('asc'), page: PageRequestSchema }),
    MessagePageSchema,
  ),
  /**
   * Messages after a sequence number, for streams resuming from Last-Event-ID and for export:
   * up to `limit` or MESSAGE_PAGE_BYTES; `more` when messages after these remain.
   */
  after: rpc(
    'message.messages.after',
    z.object({ ...sessionRef, after_seq: int32({ min: 0 }), limit: int32({ min: 1, max: 1000 }) }),
    z.object({
      items: z.array(MessageSchema),
      /** Absent from a message service older than byte-bounded pages: there, fewer than `limit` meant the end. */
      more: z.boolean().optional(),
    }),
  ),
  latest: rpc('message.messages.latest', z.object(sessionRef), MessageSchema),
  feedback: rpc(
    'message.messages.feedback',
    z.object({ ...actor, id: z.uuid(), body: FeedbackBodySchema }),
    MessageSchema,
  ),
  setSensitive: rpc(
    'message.messages.sensitive',
    z.object({ ...actor, id: z.uuid(), sensitive_status: z.enum(SENSITIVE_STATUSES) }),
    MessageSchema,
  ),
  search: rpc(
    'message.messages.search',
    SearchQuerySchema.extend({
      ...actor,
      scope: ReadScopeSchema,
      limit: int32({ min: 1, max: 200 }),
      cursor: CursorSchema.optional(),
    }),
    cursorPageSchema(SearchHitSchema),
  ),
} as const;

export const ReadScopeRpc = rpc(
  'access.permissions.read_scope',
  z.object({ subject: PrincipalSchema }),
  ReadScopeSchema,
);

/**
 * What `live.session.<id>` carries: the appended message, or, when it is too large for one
 * NATS message, a notice naming it (the gateway then reads it with `message.messages.after`).
 */
export const LiveNoticeSchema = z.object({ session_id: z.uuid(), seq: z.number().int(), oversized: z.literal(true) });
export const LiveMessageSchema = z.union([MessageSchema, LiveNoticeSchema]);
export type LiveMessage = z.infer<typeof LiveMessageSchema>;
