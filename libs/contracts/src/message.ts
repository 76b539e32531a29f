import { z } from 'zod';
import { rpc } from './rpc';
import { PrincipalSchema } from './principal';
import { JsonObjectSchema, TimestampSchema } from './common';
import { pageSchema, PageRequestSchema, cursorPageSchema } from './pagination';
import { FEEDBACK_VALUES, SENSITIVE_STATUSES, SESSION_STATUSES } from './session';

export const MESSAGE_ROLES = ['user', 'assistant', 'system', 'tool'] as const;
/** Content limit per message (API.md): beyond it, 413. */
export const MAX_CONTENT_BYTES = 256 * 1024;
export const MAX_BATCH_MESSAGES = 500;
export const MAX_BATCH_BYTES = 900 * 1024;

export const MediaSchema = z
  .object({
    type: z.string().min(1).max(100),
    url: z.string().min(1).max(4096),
    name: z.string().max(500).optional(),
    size: z.number().int().nonnegative().optional(),
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
    content: z.string(),
    tokens: z.number().int().nonnegative().default(0),
    metadata: JsonObjectSchema.optional(),
    media: z.array(MediaSchema).max(100).optional(),
    client_message_id: z.string().min(1).max(128).optional(),
  })
  .strict();
export type NewMessage = z.input<typeof NewMessageSchema>;

export const BatchBodySchema = z
  .object({ messages: z.array(NewMessageSchema).min(1).max(MAX_BATCH_MESSAGES) })
  .strict();

export const MessageListQuerySchema = z.object({ order: z.enum(['asc', 'desc']).default('asc') });

export const FeedbackBodySchema = z
  .object({ feedback: z.enum(FEEDBACK_VALUES).nullable(), copied: z.literal(true).optional() })
  .strict();
export const SensitiveBodySchema = z.object({ sensitive_status: z.enum(SENSITIVE_STATUSES) }).strict();

export const SearchQuerySchema = z.object({
  q: z.string().trim().min(2, 'at least 2 characters').max(200),
  bot_id: z.uuid().optional(),
  session_id: z.uuid().optional(),
});
export const SearchHitSchema = MessageSchema.extend({ rank: z.number() });

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
export const ReadScopeSchema = z.object({
  all: z.boolean(),
  user_id: z.uuid().nullable(),
  group_ids: z.array(z.uuid()),
  bot_ids: z.array(z.uuid()),
  session_ids: z.array(z.uuid()),
});
export type ReadScope = z.infer<typeof ReadScopeSchema>;

const actor = { actor: PrincipalSchema };
const sessionRef = { ...actor, session_id: z.uuid() };

export const SessionAccessRpc = rpc(
  'session.sessions.authorize',
  z.object({ ...actor, id: z.uuid(), action: z.enum(['read', 'write', 'manage']) }),
  SessionAccessSchema,
);

export const MessageRpc = {
  append: rpc(
    'message.messages.append',
    z.object({ ...sessionRef, message: NewMessageSchema }),
    z.object({ created: z.boolean(), message: MessageSchema }),
  ),
  appendBatch: rpc(
    'message.messages.append_batch',
    z.object({ ...sessionRef, messages: z.array(NewMessageSchema).min(1).max(MAX_BATCH_MESSAGES) }),
    z.object({ items: z.array(MessageSchema) }),
  ),
  list: rpc(
    'message.messages.list',
    z.object({ ...sessionRef, order: z.enum(['asc', 'desc']).default('asc'), page: PageRequestSchema }),
    pageSchema(MessageSchema),
  ),
  /** Messages after a sequence number, for streams resuming from Last-Event-ID and for export. */
  after: rpc(
    'message.messages.after',
    z.object({ ...sessionRef, after_seq: z.number().int().nonnegative(), limit: z.number().int().min(1).max(1000) }),
    z.object({ items: z.array(MessageSchema) }),
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
      limit: z.number().int().min(1).max(200),
      cursor: z.string().optional(),
    }),
    cursorPageSchema(SearchHitSchema),
  ),
} as const;

export const ReadScopeRpc = rpc(
  'access.permissions.read_scope',
  z.object({ subject: PrincipalSchema }),
  ReadScopeSchema,
);
