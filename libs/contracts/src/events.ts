import { z } from 'zod';
import { MAX_ID_LIST, dateTime, list, text } from './input';
import { SESSION_STATUSES } from './session';

/** Domain events, written to a service's outbox and relayed to the DOMAIN stream. */
export const DOMAIN_STREAM = 'DOMAIN';
export const USAGE_STREAM = 'USAGE';
export const DOMAIN_SUBJECTS = 'evt.>';
export const DLQ_DOMAIN = 'dlq.domain';
export const DLQ_USAGE = 'dlq.usage';
export const DLQ_STREAM = 'DLQ';

/** Durable consumer names (shared by every instance of the consuming service). */
export const Durables = {
  accessEpoch: 'access-epoch',
  sessionMessageStats: 'session-message-stats',
  messageSessionEvents: 'message-session-events',
  usageRecords: 'usage-records',
  usageActivity: 'usage-activity',
} as const;

export const SessionEventSchema = z.object({
  session_id: z.uuid(),
  user_id: z.uuid(),
  bot_id: z.uuid().nullable(),
  group_ids: list(z.uuid(), { max: MAX_ID_LIST }),
  /** Absent from events written before it was added: the status is then not known. */
  status: z.enum(SESSION_STATUSES).optional(),
  occurred_at: dateTime(),
});
export type SessionEvent = z.infer<typeof SessionEventSchema>;

import { MessageStatsSchema } from './message';
import { BudgetExceededSchema } from './usage';

export const DomainEvents = {
  messageStats: { subject: 'evt.message.stats', schema: MessageStatsSchema },
  sessionCreated: { subject: 'evt.session.created', schema: SessionEventSchema },
  sessionUpdated: { subject: 'evt.session.updated', schema: SessionEventSchema },
  sessionDeleted: { subject: 'evt.session.deleted', schema: SessionEventSchema },
  /** A bot's usage reached its budget: once per bot and period. */
  budgetExceeded: { subject: 'evt.usage.budget_exceeded', schema: BudgetExceededSchema },
  accessChanged: {
    subject: 'evt.access.changed',
    schema: z.object({
      kind: z.enum(['user', 'membership', 'role', 'grant', 'bot', 'key']),
      id: text({ min: 1, max: 200 }),
      occurred_at: dateTime(),
    }),
  },
} as const;

/**
 * Published on the DOMAIN stream by `main.js restore` for each schema it restored (no consumer
 * of Parley's reads it): the events of that service before it belong to the timeline the
 * restore discarded, and a consumer restored later starts after it (docs/operations.md).
 */
export const restoredSubject = (service: string) => `evt.restored.${service}`;
export const RestoredEventSchema = z.object({
  service: text({ min: 1, max: 64 }),
  schema: text({ min: 1, max: 63 }),
  /** The backup's file name. */
  backup: text({ min: 1, max: 255 }),
  restored_at: dateTime(),
});
export type RestoredEvent = z.infer<typeof RestoredEventSchema>;

/** Every event of a session (created, updated, deleted), for one consumer that follows them all. */
export const SessionEvents = { subject: 'evt.session.>', schema: SessionEventSchema } as const;

export interface DomainEventContract<S extends z.ZodType = z.ZodType> {
  readonly subject: string;
  readonly schema: S;
}

/** A dead letter carries its original whole up to this size; beyond, only its first bytes as text. */
export const DEAD_LETTER_EVENT_BYTES = 64 * 1024;

/** What a dead-letter subject carries. */
export const DeadLetterSchema = z.object({
  reason: z.string(),
  /** A stable word for the reason (`INVALID_EVENT`, `UNKNOWN_BOT`, …), for alerts and replay tooling. */
  code: z.string().optional(),
  subject: z.string(),
  /** The original payload, parsed if it was JSON; absent when truncated. */
  event: z.unknown().optional(),
  /** The original was larger than DEAD_LETTER_EVENT_BYTES: `event_text` holds its first bytes. */
  event_truncated: z.literal(true).optional(),
  event_text: z.string().optional(),
  /** Where the original still is in its stream (while the stream keeps it). */
  stream_seq: z.number().int().optional(),
  received_at: z.string(),
  deliveries: z.number().int().optional(),
});
export type DeadLetter = z.infer<typeof DeadLetterSchema>;
