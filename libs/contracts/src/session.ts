import { z } from 'zod';
import { rpc } from './rpc';
import { PrincipalSchema } from './principal';
import { BoundedJsonObjectSchema, JsonObjectSchema, TimestampSchema } from './common';
import { pageSchema, PageRequestSchema } from './pagination';
import { dateTime, text } from './input';

export const SESSION_STATUSES = ['active', 'archived'] as const;
export const SENSITIVE_STATUSES = ['unchecked', 'pass', 'violation'] as const;
export const FEEDBACK_VALUES = ['like', 'dislike'] as const;

export const SessionSchema = z.object({
  id: z.uuid(),
  user_id: z.uuid(),
  bot_id: z.uuid().nullable(),
  title: z.string().nullable(),
  status: z.enum(SESSION_STATUSES),
  group_ids: z.array(z.uuid()),
  metadata: JsonObjectSchema,
  state: JsonObjectSchema,
  message_count: z.number().int(),
  like_count: z.number().int(),
  dislike_count: z.number().int(),
  copied_count: z.number().int(),
  sensitive_status: z.enum(SENSITIVE_STATUSES),
  last_message_at: TimestampSchema.nullable(),
  created_at: TimestampSchema,
  updated_at: TimestampSchema,
});
export type Session = z.infer<typeof SessionSchema>;

const title = text({ trim: true, min: 1, max: 500 });

export const CreateSessionBodySchema = z
  .object({
    title: title.optional(),
    bot_id: z.uuid().optional(),
    metadata: BoundedJsonObjectSchema.optional(),
    state: BoundedJsonObjectSchema.optional(),
    user_id: z.uuid().optional(),
  })
  .strict();

export const UpdateSessionBodySchema = z
  .object({
    title: title.nullable().optional(),
    status: z.enum(SESSION_STATUSES).optional(),
    metadata: BoundedJsonObjectSchema.optional(),
    state: BoundedJsonObjectSchema.optional(),
  })
  .strict()
  .refine((b) => Object.keys(b).length > 0, { message: 'nothing to update' });

const sessionFiltersShape = {
  bot_id: z.uuid().optional(),
  user_id: z.uuid().optional(),
  status: z.enum(SESSION_STATUSES).optional(),
  q: text({ trim: true, min: 1, max: 200 }).optional(),
  created_from: dateTime().optional(),
  created_to: dateTime().optional(),
  feedback: z.enum(FEEDBACK_VALUES).optional(),
  sensitive_status: z.enum(SENSITIVE_STATUSES).optional(),
};
const createdInOrder = (f: { created_from?: string; created_to?: string }) =>
  !(f.created_from && f.created_to) || Date.parse(f.created_from) <= Date.parse(f.created_to);
const createdOrderError = { message: 'must not be later than created_to', path: ['created_from'] };

export const SessionFiltersSchema = z.object(sessionFiltersShape).refine(createdInOrder, createdOrderError);
export type SessionFilters = z.infer<typeof SessionFiltersSchema>;

const actor = { actor: PrincipalSchema };
const SessionPageSchema = pageSchema(SessionSchema);

/** A page of sessions stays within this many bytes of JSON (metadata and state may be 64 KiB each). */
export const SESSION_PAGE_BYTES = 512 * 1024;

export const SessionRpc = {
  create: rpc('session.sessions.create', CreateSessionBodySchema.extend(actor), SessionSchema),
  get: rpc('session.sessions.get', z.object({ ...actor, id: z.uuid() }), SessionSchema),
  list: rpc(
    'session.sessions.list',
    z.object({ ...sessionFiltersShape, ...actor, page: PageRequestSchema }).refine(createdInOrder, createdOrderError),
    SessionPageSchema,
  ),
  update: rpc(
    'session.sessions.update',
    z.object({ ...actor, id: z.uuid(), patch: UpdateSessionBodySchema }),
    SessionSchema,
  ),
  remove: rpc('session.sessions.delete', z.object({ ...actor, id: z.uuid() }), z.object({ id: z.uuid() })),
} as const;
