import { z } from 'zod';
import { rpc } from './rpc';
import { PrincipalSchema } from './principal';
import { JsonObjectSchema, TimestampSchema } from './common';
import { CursorSchema, cursorPageSchema } from './pagination';
import { MIN_INSTANT_MS, dateTime, finite, int, int32, jsonObject, list, queryInt, text, timeZone } from './input';
import { rangeTooLarge, type FieldError } from './errors';

// ---------------------------------------------------------------------------------------
// Events bots publish (API.md, "Usage and activity")

export const USAGE_STATUSES = ['started', 'completed', 'failed'] as const;
export type UsageStatus = (typeof USAGE_STATUSES)[number];
export const TERMINAL_STATUSES: readonly UsageStatus[] = ['completed', 'failed'];

/** Subjects bots publish on; the USAGE stream captures both families. */
export const usageSubject = (botId: string) => `usage.events.${botId}`;
export const activitySubject = (botId: string) => `activity.events.${botId}`;
/** A page of activity stays within this many bytes of JSON (an event may carry 64 KiB). */
export const ACTIVITY_PAGE_BYTES = 512 * 1024;
export const USAGE_EVENT_SUBJECTS = 'usage.events.*';
export const USAGE_ACTIVITY_SUBJECTS = 'activity.events.*';
export const USAGE_STREAM_SUBJECTS = [USAGE_EVENT_SUBJECTS, USAGE_ACTIVITY_SUBJECTS] as const;
/** The bot a usage or activity subject names (its last token), or undefined. */
export function botOfSubject(subject: string): string | undefined {
  const match = /^(?:usage|activity)\.events\.([^.]+)$/.exec(subject);
  return match?.[1];
}

/** `Nats-Msg-Id` of a usage event: a retried publish of the same report is dropped by the stream. */
export const usageMsgId = (e: { bot_id: string; request_id: string; status: string }) =>
  `${e.bot_id}:${e.request_id}:${e.status}`;
export const activityMsgId = (e: { bot_id: string; event_id: string }) => `${e.bot_id}:${e.event_id}`;

/** Most events a POST may carry, and a bound on token counts that no real request reaches. */
export const MAX_EVENTS_PER_POST = 500;
export const MAX_TOKENS_PER_FIELD = 1_000_000_000;

/** Client-chosen ids (request_id, event_id) travel in a NATS header: visible ASCII only. */
const externalId = text({
  min: 1,
  max: 200,
  pattern: /^[!-~]+$/,
  patternMessage: 'visible ASCII characters only (no spaces)',
});
const noControl = (max: number) => text({ min: 1, max, noControl: true });
const tokenCount = int({ min: 0, max: MAX_TOKENS_PER_FIELD });
const timestamp = dateTime();

export const UsageEventSchema = z
  .object({
    request_id: externalId,
    bot_id: z.uuid(),
    session_id: z.uuid().nullish(),
    user_id: z.uuid().nullish(),
    channel: noControl(64).nullish(),
    status: z.enum(USAGE_STATUSES),
    provider: noControl(64).nullish(),
    model: noControl(128).nullish(),
    input_tokens: tokenCount.default(0),
    output_tokens: tokenCount.default(0),
    /** Defaults to input + output. */
    total_tokens: tokenCount.optional(),
    started_at: timestamp,
    completed_at: timestamp.nullish(),
  })
  .strict();
export type UsageEventInput = z.input<typeof UsageEventSchema>;
export type UsageEvent = z.output<typeof UsageEventSchema>;

export const totalTokensOf = (e: Pick<UsageEvent, 'input_tokens' | 'output_tokens' | 'total_tokens'>) =>
  e.total_tokens ?? e.input_tokens + e.output_tokens;

const MAX_METADATA_BYTES = 16 * 1024;

export const ActivityEventSchema = z
  .object({
    event_id: externalId,
    bot_id: z.uuid(),
    request_id: externalId.nullish(),
    event_type: z
      .string()
      .min(1)
      .max(64)
      .regex(/^[A-Za-z0-9_.:-]+$/, 'letters, digits and _ . : - only'),
    channel: noControl(64).nullish(),
    detail: text({ max: 4096 }).nullish(),
    metadata: jsonObject({ maxBytes: MAX_METADATA_BYTES }).nullish(),
    occurred_at: timestamp,
  })
  .strict();
export type ActivityEventInput = z.input<typeof ActivityEventSchema>;
export type ActivityEvent = z.output<typeof ActivityEventSchema>;

/** How far an event's time may lie from the receiver's clock before it is refused as absurd. */
export interface EventTimeLimits {
  /** Oldest accepted time, as an age. */
  maxAgeMs: number;
  /** How far ahead of the receiver's clock a sender's clock may run. */
  maxSkewMs: number;
}
export const DEFAULT_EVENT_TIME_LIMITS: EventTimeLimits = {
  maxAgeMs: 90 * 24 * 60 * 60 * 1000,
  maxSkewMs: 5 * 60 * 1000,
};

/** The time problems of an event that passed its schema; empty when its times are plausible. */
export function eventTimeProblems(
  times: { field: string; value: string | null | undefined }[],
  now: number,
  limits: EventTimeLimits,
): FieldError[] {
  const problems: FieldError[] = [];
  const parsed = times.map((t) => ({ ...t, ms: t.value ? Date.parse(t.value) : undefined }));
  for (const t of parsed) {
    if (t.ms === undefined) continue;
    if (t.ms > now + limits.maxSkewMs) {
      problems.push({ field: t.field, message: `more than ${Math.round(limits.maxSkewMs / 1000)} s in the future` });
    } else if (t.ms < now - limits.maxAgeMs) {
      problems.push({
        field: t.field,
        message: `older than ${Math.round(limits.maxAgeMs / 86_400_000)} days`,
      });
    }
  }
  const [first, second] = parsed;
  if (first?.ms !== undefined && second?.ms !== undefined && second.ms < first.ms) {
    problems.push({ field: second.field, message: `earlier than ${first.field}` });
  }
  return problems;
}

export const usageEventTimeProblems = (e: UsageEvent, now: number, limits: EventTimeLimits) =>
  eventTimeProblems(
    [
      { field: 'started_at', value: e.started_at },
      { field: 'completed_at', value: e.completed_at },
    ],
    now,
    limits,
  );
export const activityEventTimeProblems = (e: ActivityEvent, now: number, limits: EventTimeLimits) =>
  eventTimeProblems([{ field: 'occurred_at', value: e.occurred_at }], now, limits);

/** Why an event went to `dlq.usage`: the stable first word of its `reason`, and its `code`. */
export const USAGE_DEAD_LETTER_CODES = [
  'NOT_JSON',
  'INVALID_EVENT',
  'BAD_TIMESTAMP',
  'BOT_MISMATCH',
  'UNKNOWN_BOT',
  'BOT_DISABLED',
  'POISON',
  'UNDELIVERABLE',
] as const;
export type UsageDeadLetterCode = (typeof USAGE_DEAD_LETTER_CODES)[number];

// ---------------------------------------------------------------------------------------
// Answers

/** A decimal amount as a string, so that no float ever touches money. */
const DecimalStringSchema = z.string().regex(/^-?\d+(\.\d+)?$/);
/** A decimal given in a request: a JSON number or a string, non-negative, at most `scale` decimals. */
const decimalInput = (scale: number) =>
  z
    .union([finite({ min: 0, max: 1e12 }), text({ max: 64 })])
    .transform((v) => (typeof v === 'number' ? String(v) : v.trim()))
    .refine(
      (v) => new RegExp(`^\\d{1,12}(\\.\\d{1,${scale}})?$`).test(v),
      `a non-negative decimal with at most ${scale} decimal places`,
    );
export const CurrencySchema = z.string().regex(/^[A-Z]{3}$/, 'an ISO 4217 code such as USD');

/** What every usage total counts. */
const usageCountsShape = {
  requests: z.number().int(),
  input_tokens: z.number().int(),
  output_tokens: z.number().int(),
  total_tokens: z.number().int(),
};

export const UsageTotalsSchema = z.object({
  ...usageCountsShape,
  /** Decimal string in `currency`; null when nothing in it is priced, or when it is priced in several currencies. */
  cost: DecimalStringSchema.nullable(),
  currency: z.string().nullable(),
  /** The cost per currency. */
  costs: z.array(z.object({ currency: z.string(), cost: DecimalStringSchema })),
  unpriced_requests: z.number().int(),
});
export type UsageTotals = z.infer<typeof UsageTotalsSchema>;

export const UsageRecordSchema = z.object({
  bot_id: z.uuid(),
  request_id: z.string(),
  session_id: z.uuid().nullable(),
  user_id: z.uuid().nullable(),
  channel: z.string().nullable(),
  status: z.enum(USAGE_STATUSES),
  provider: z.string().nullable(),
  model: z.string().nullable(),
  input_tokens: z.number().int(),
  output_tokens: z.number().int(),
  total_tokens: z.number().int(),
  started_at: TimestampSchema,
  completed_at: TimestampSchema.nullable(),
  /** Null when no price was in force for the provider and model at `started_at`. */
  cost: DecimalStringSchema.nullable(),
  currency: z.string().nullable(),
  /** The price version the cost was computed with. */
  price_id: z.uuid().nullable(),
  created_at: TimestampSchema,
  updated_at: TimestampSchema,
});
export type UsageRecordView = z.infer<typeof UsageRecordSchema>;

export const ActivitySchema = z.object({
  bot_id: z.uuid(),
  event_id: z.string(),
  request_id: z.string().nullable(),
  event_type: z.string(),
  channel: z.string().nullable(),
  detail: z.string().nullable(),
  metadata: JsonObjectSchema.nullable(),
  occurred_at: TimestampSchema,
  received_at: TimestampSchema,
});
export type ActivityView = z.infer<typeof ActivitySchema>;

export const USAGE_GROUP_KEYS = ['bot', 'model', 'provider', 'channel', 'user', 'status', 'hour', 'day'] as const;
export type UsageGroupKey = (typeof USAGE_GROUP_KEYS)[number];

/** An IANA time zone name that this runtime and PostgreSQL know ("UTC", "Asia/Shanghai", "America/New_York"). */
export const TimeZoneSchema = timeZone();

export function isKnownTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

const rangeShape = {
  from: timestamp.optional(),
  to: timestamp.optional(),
};
const rangeOrder = <T extends { from?: string; to?: string }>(q: T) =>
  !(q.from && q.to) || Date.parse(q.from) < Date.parse(q.to);
const rangeOrderError = { message: 'must be earlier than to', path: ['from'] };

/**
 * The window of a usage query: `to` defaults to now, `from` to 24 hours before `to` (never
 * before the earliest instant a timestamp may name).
 */
export function resolveRange(q: { from?: string; to?: string }, now: number): { from: Date; to: Date } {
  const to = q.to ? new Date(Date.parse(q.to)) : new Date(now);
  const from = q.from
    ? new Date(Date.parse(q.from))
    : new Date(Math.max(to.getTime() - 24 * 60 * 60 * 1000, MIN_INSTANT_MS));
  return { from, to };
}

const summaryFilterShape = {
  ...rangeShape,
  bot_id: z.uuid().optional(),
  user_id: z.uuid().optional(),
  tz: TimeZoneSchema.default('UTC'),
};

/** The widest summary range (`to` − `from`), and the widest when grouped by hour. */
export const MAX_SUMMARY_RANGE_DAYS = 400;
export const MAX_HOURLY_SUMMARY_RANGE_DAYS = 31;
const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * A summary's range with its defaults filled in (as `resolveRange`), `from` earlier than `to`,
 * and no wider than `MAX_SUMMARY_RANGE_DAYS` (`MAX_HOURLY_SUMMARY_RANGE_DAYS` when grouped by
 * hour): beyond, RANGE_TOO_LARGE. The gateway sends the resolved range on, so the service
 * checks the very same one.
 */
function boundSummaryRange<T extends { from?: string; to?: string; group_by: UsageGroupKey[] }>(
  q: T,
  ctx: z.RefinementCtx<T>,
): T & { from: string; to: string } {
  const { from, to } = resolveRange(q, Date.now());
  if (Number.isNaN(from.getTime()) || Number.isNaN(to.getTime())) {
    ctx.addIssue({ code: 'custom', message: 'not a valid time', path: [Number.isNaN(from.getTime()) ? 'from' : 'to'] });
    return z.NEVER;
  }
  if (from >= to) {
    ctx.addIssue({
      code: 'custom',
      message: q.to ? 'must be earlier than to' : 'must be earlier than now',
      path: ['from'],
    });
    return z.NEVER;
  }
  const hourly = q.group_by.includes('hour');
  const days = hourly ? MAX_HOURLY_SUMMARY_RANGE_DAYS : MAX_SUMMARY_RANGE_DAYS;
  if (to.getTime() - from.getTime() > days * DAY_MS) {
    ctx.addIssue({
      code: 'custom',
      path: ['from'],
      ...rangeTooLarge(`from … to spans more than ${days} days${hourly ? ' (grouped by hour)' : ''}`),
    });
    return z.NEVER;
  }
  return { ...q, from: from.toISOString(), to: to.toISOString() };
}

/** `GET /usage/summary` as its query string arrives. */
export const UsageSummaryQuerySchema = z
  .object({
    ...summaryFilterShape,
    group_by: text({ max: 200 })
      .optional()
      .transform((v) => (v ? v.split(',').map((s) => s.trim()) : []))
      .pipe(z.array(z.enum(USAGE_GROUP_KEYS)).refine((keys) => new Set(keys).size === keys.length, 'a key twice')),
  })
  .transform(boundSummaryRange);

export const UsageSummaryItemSchema = z.object({
  bot_id: z.uuid().optional(),
  model: z.string().nullable().optional(),
  provider: z.string().nullable().optional(),
  channel: z.string().nullable().optional(),
  user_id: z.uuid().nullable().optional(),
  status: z.enum(USAGE_STATUSES).optional(),
  /** RFC 3339 start of the hour, with the offset of `tz`. */
  hour: z.string().optional(),
  /** YYYY-MM-DD in `tz`. */
  day: z.string().optional(),
  ...usageCountsShape,
  cost: DecimalStringSchema.nullable(),
  currency: z.string().nullable(),
  unpriced_requests: z.number().int(),
});
export type UsageSummaryItem = z.infer<typeof UsageSummaryItemSchema>;
export const UsageSummarySchema = z.object({
  from: TimestampSchema,
  to: TimestampSchema,
  tz: z.string(),
  group_by: z.array(z.enum(USAGE_GROUP_KEYS)),
  items: z.array(UsageSummaryItemSchema),
});
/** A summary answers at most this many rows; a wider one asks for a narrower range or grouping. */
export const MAX_SUMMARY_ROWS = 10_000;

const cursorPageQueryShape = {
  limit: queryInt({ min: 1, max: 200 }).default(50),
  cursor: CursorSchema.optional(),
};

export const UsageRecordsQuerySchema = z
  .object({
    ...rangeShape,
    bot_id: z.uuid().optional(),
    session_id: z.uuid().optional(),
    user_id: z.uuid().optional(),
    status: z.enum(USAGE_STATUSES).optional(),
    ...cursorPageQueryShape,
  })
  .refine(rangeOrder, rangeOrderError);

export const ActivityQuerySchema = z.object({
  event_type: text({ min: 1, max: 64 }).optional(),
  ...cursorPageQueryShape,
});

// ---------------------------------------------------------------------------------------
// Prices and budgets

export const PriceInputSchema = z
  .object({
    provider: noControl(64),
    model: noControl(128),
    input_per_million: decimalInput(6),
    output_per_million: decimalInput(6),
    currency: CurrencySchema,
    /** Defaults to the moment the price is stored. */
    effective_from: timestamp.optional(),
  })
  .strict();
export const MAX_PRICES_PER_PUT = 1000;
export const PutPricesBodySchema = z
  .object({ prices: list(PriceInputSchema, { min: 1, max: MAX_PRICES_PER_PUT }) })
  .strict()
  .refine(
    (b) =>
      new Set(b.prices.map((p) => `${p.provider}\u0000${p.model}\u0000${p.effective_from ?? ''}`)).size ===
      b.prices.length,
    { message: 'the same provider, model and effective_from twice', path: ['prices'] },
  );
export const PriceSchema = z.object({
  id: z.uuid(),
  provider: z.string(),
  model: z.string(),
  input_per_million: DecimalStringSchema,
  output_per_million: DecimalStringSchema,
  currency: z.string(),
  effective_from: TimestampSchema,
  created_at: TimestampSchema,
});
export type Price = z.infer<typeof PriceSchema>;
export const PricesQuerySchema = z.object({
  provider: text({ min: 1, max: 64 }).optional(),
  model: text({ min: 1, max: 128 }).optional(),
  ...cursorPageQueryShape,
});

export const BUDGET_PERIODS = ['day', 'month'] as const;
export type BudgetPeriod = (typeof BUDGET_PERIODS)[number];

export const BudgetBodySchema = z
  .object({
    period: z.enum(BUDGET_PERIODS),
    max_tokens: int({ min: 1, max: Number.MAX_SAFE_INTEGER }).nullish(),
    max_cost: decimalInput(12).nullish(),
    /** The currency `max_cost` is counted in; costs in other currencies do not count against it. */
    currency: CurrencySchema.default('USD'),
  })
  .strict();
export const BudgetSchema = z.object({
  bot_id: z.uuid(),
  period: z.enum(BUDGET_PERIODS),
  max_tokens: z.number().int().nullable(),
  max_cost: DecimalStringSchema.nullable(),
  currency: z.string(),
  updated_at: TimestampSchema,
});
export type Budget = z.infer<typeof BudgetSchema>;

export const QuotaSchema = z.object({
  bot_id: z.uuid(),
  period: z.enum(BUDGET_PERIODS),
  /** Start of the current period, UTC. */
  period_start: TimestampSchema,
  used_tokens: z.number().int(),
  /** Cost in the budget's currency. */
  used_cost: DecimalStringSchema,
  max_tokens: z.number().int().nullable(),
  max_cost: DecimalStringSchema.nullable(),
  remaining_tokens: z.number().int().nullable(),
  remaining_cost: DecimalStringSchema.nullable(),
  currency: z.string(),
  /** The budget is used up: tokens or cost have reached their maximum. */
  exceeded: z.boolean(),
});
export type Quota = z.infer<typeof QuotaSchema>;

export const BudgetExceededSchema = QuotaSchema.pick({
  bot_id: true,
  period: true,
  period_start: true,
  used_tokens: true,
  used_cost: true,
  max_tokens: true,
  max_cost: true,
  currency: true,
}).extend({ currency: CurrencySchema, occurred_at: TimestampSchema });
export type BudgetExceeded = z.infer<typeof BudgetExceededSchema>;

/** What `POST /usage/events` answers once every event is durably in JetStream. */
export const IngestAcceptedSchema = z.object({
  accepted: z.number().int(),
  /** Events the stream had already stored under the same Nats-Msg-Id (a retry): counted once. */
  duplicates: z.number().int(),
});

// ---------------------------------------------------------------------------------------
// Subjects

const actor = { actor: PrincipalSchema };
const cursorRequest = { limit: int32({ min: 1, max: 200 }), cursor: CursorSchema.optional() };

/** Plain JSON in both directions, for any NATS client: a bot asks for its quota. */
export const QuotaCheckRpc = rpc('usage.quota.check', z.object({ bot_id: z.uuid() }).strict(), QuotaSchema);

const summaryRequest = z
  .object({
    ...actor,
    ...summaryFilterShape,
    group_by: list(z.enum(USAGE_GROUP_KEYS), { max: USAGE_GROUP_KEYS.length }),
  })
  .transform(boundSummaryRange);

export const UsageRpc = {
  /** Totals of one session's usage records; the caller has already established it may read the session. */
  sessionTotals: rpc('usage.totals.session', z.object({ session_id: z.uuid() }), UsageTotalsSchema),
  summary: rpc('usage.summary.get', summaryRequest, UsageSummarySchema),
  records: rpc(
    'usage.records.list',
    z
      .object({
        ...actor,
        ...rangeShape,
        bot_id: z.uuid().optional(),
        session_id: z.uuid().optional(),
        user_id: z.uuid().optional(),
        status: z.enum(USAGE_STATUSES).optional(),
        ...cursorRequest,
      })
      .refine(rangeOrder, rangeOrderError),
    cursorPageSchema(UsageRecordSchema),
  ),
  activity: rpc(
    'usage.activity.list',
    z.object({ ...actor, bot_id: z.uuid(), event_type: text({ min: 1, max: 64 }).optional(), ...cursorRequest }),
    cursorPageSchema(ActivitySchema),
  ),
  putPrices: rpc(
    'usage.prices.put',
    z.object({ ...actor, prices: list(PriceInputSchema, { min: 1, max: MAX_PRICES_PER_PUT }) }),
    z.object({ items: z.array(PriceSchema) }),
  ),
  listPrices: rpc(
    'usage.prices.list',
    z.object({
      ...actor,
      provider: text({ min: 1, max: 64 }).optional(),
      model: text({ min: 1, max: 128 }).optional(),
      ...cursorRequest,
    }),
    cursorPageSchema(PriceSchema),
  ),
  putBudget: rpc('usage.budgets.put', BudgetBodySchema.extend({ ...actor, bot_id: z.uuid() }), BudgetSchema),
  quota: rpc('usage.quota.get', z.object({ ...actor, bot_id: z.uuid() }), QuotaSchema),
} as const;
