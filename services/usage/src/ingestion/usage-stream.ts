import { Controller, Inject, type OnApplicationBootstrap } from '@nestjs/common';
import {
  ActivityEventSchema,
  DLQ_USAGE,
  Durables,
  USAGE_ACTIVITY_SUBJECTS,
  USAGE_EVENT_SUBJECTS,
  USAGE_STREAM,
  USAGE_STREAM_SUBJECTS,
  UsageEventSchema,
  activityEventTimeProblems,
  botOfSubject,
  usageEventTimeProblems,
  type ActivityEvent,
  type EventTimeLimits,
  type FieldError,
  type UsageEvent,
} from '@parley/contracts';
import {
  Nats,
  StreamBatchHandler,
  ensureStream,
  eventTimeLimits,
  type BatchItem,
  type BatchVerdict,
  type DeliveryMeta,
  type StreamSpec,
} from '@parley/kit';
import { ActivityIngest } from '../activity/activity-ingest.service';
import { USAGE_CONFIG, type UsageConfig } from '../config';
import { UsageIngest } from './usage-ingest.service';

export function usageStreamSpec(config: UsageConfig): StreamSpec {
  return {
    name: USAGE_STREAM,
    subjects: [...USAGE_STREAM_SUBJECTS],
    maxAgeMs: config.USAGE_STREAM_MAX_AGE_HOURS * 60 * 60 * 1000,
    duplicateWindowMs: config.USAGE_DUPLICATE_WINDOW_SECONDS * 1000,
    maxBytes: config.USAGE_STREAM_MAX_BYTES,
  };
}

/** What a schema cannot check: that the subject's bot is the event's, and that its times are plausible. */
export function eventCheck<E extends { bot_id: string }>(
  timeProblems: (event: E, now: number, limits: EventTimeLimits) => FieldError[],
  limits: EventTimeLimits,
) {
  return (event: E, meta: DeliveryMeta) => {
    const named = botOfSubject(meta.subject);
    if (named !== event.bot_id) {
      return {
        code: 'BOT_MISMATCH',
        reason: `the subject ${meta.subject} is for bot ${named ?? '(none)'} but the event names bot ${event.bot_id}`,
      };
    }
    const problems = timeProblems(event, Date.now(), limits);
    if (problems.length > 0) {
      return { code: 'BAD_TIMESTAMP', reason: problems.map((p) => `${p.field}: ${p.message}`).join('; ') };
    }
    return undefined;
  };
}

/**
 * Provisions the USAGE stream (idempotently, at every start) and takes it in batches through
 * two durable consumers shared by every instance: `usage-records` and `usage-activity`.
 * Events whose subject names another bot, or whose times are implausible, are dead-lettered
 * before the rest of the batch is written.
 */
@Controller()
export class UsageStreamHandlers implements OnApplicationBootstrap {
  private readonly checkUsage: ReturnType<typeof eventCheck<UsageEvent>>;
  private readonly checkActivity: ReturnType<typeof eventCheck<ActivityEvent>>;

  constructor(
    @Inject(USAGE_CONFIG) private readonly config: UsageConfig,
    @Inject(Nats) private readonly nats: Nats,
    @Inject(UsageIngest) private readonly usage: UsageIngest,
    @Inject(ActivityIngest) private readonly activity: ActivityIngest,
  ) {
    const limits = eventTimeLimits(config);
    this.checkUsage = eventCheck(usageEventTimeProblems, limits);
    this.checkActivity = eventCheck(activityEventTimeProblems, limits);
  }

  async onApplicationBootstrap(): Promise<void> {
    await ensureStream(this.nats, usageStreamSpec(this.config));
  }

  @StreamBatchHandler(USAGE_EVENT_SUBJECTS, {
    stream: USAGE_STREAM,
    durable: Durables.usageRecords,
    deadLetterSubject: DLQ_USAGE,
    schema: UsageEventSchema,
    // A request's reports are written in the order they arrived: its `started_at` comes from the first.
    key: (event) => `${event.bot_id}:${event.request_id}`,
  })
  records(items: BatchItem<UsageEvent>[]): Promise<BatchVerdict[]> {
    return screened(items, this.checkUsage, (accepted) => this.usage.ingest(accepted));
  }

  @StreamBatchHandler(USAGE_ACTIVITY_SUBJECTS, {
    stream: USAGE_STREAM,
    durable: Durables.usageActivity,
    deadLetterSubject: DLQ_USAGE,
    schema: ActivityEventSchema,
  })
  activities(items: BatchItem<ActivityEvent>[]): Promise<BatchVerdict[]> {
    return screened(items, this.checkActivity, (accepted) => this.activity.ingest(accepted));
  }
}

/** Batch consumer tuning from the configuration, by durable name. */
export function usageConsumerTuning(config: UsageConfig) {
  const tuning = {
    maxBatch: config.USAGE_BATCH_SIZE,
    concurrency: config.USAGE_INGEST_CONCURRENCY,
    maxAckPending: config.USAGE_BATCH_SIZE * 4,
  };
  return { [Durables.usageRecords]: tuning, [Durables.usageActivity]: tuning };
}

/** Refuses what `check` refuses, hands the rest to `handle`, and answers a verdict per item in order. */
async function screened<T>(
  items: BatchItem<T>[],
  check: (event: T, meta: DeliveryMeta) => { code: string; reason: string } | undefined,
  handle: (accepted: BatchItem<T>[]) => Promise<BatchVerdict[]>,
): Promise<BatchVerdict[]> {
  const verdicts: (BatchVerdict | undefined)[] = items.map((item) => {
    const refused = check(item.event, item.meta);
    return refused ? { ok: false, ...refused } : undefined;
  });
  const accepted = items.filter((_, i) => verdicts[i] === undefined);
  const handled = accepted.length > 0 ? await handle(accepted) : [];
  let next = 0;
  return verdicts.map((v) => v ?? handled[next++] ?? { ok: false, code: 'POISON', reason: 'no verdict' });
}
