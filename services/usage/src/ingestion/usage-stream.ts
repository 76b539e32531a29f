import { Inject, Injectable, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import {
  ActivityEventSchema,
  DLQ_USAGE,
  USAGE_STREAM,
  USAGE_STREAM_SUBJECTS,
  UsageEventSchema,
  activityEventTimeProblems,
  botOfSubject,
  usageEventTimeProblems,
  type EventTimeLimits,
  type FieldError,
} from '@parley/contracts';
import {
  BatchConsumer,
  LOGGER,
  Metrics,
  Nats,
  ensureStream,
  eventTimeLimits,
  type DeliveryMeta,
  type Logger,
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
 * Provisions the USAGE stream (idempotently, at every start) and consumes it with two durable
 * pull consumers shared by every instance: `usage-records` and `usage-activity`.
 */
@Injectable()
export class UsageStreamConsumers implements OnApplicationBootstrap, OnModuleDestroy {
  private consumers: { stop(): Promise<void> }[] = [];

  constructor(
    @Inject(USAGE_CONFIG) private readonly config: UsageConfig,
    @Inject(Nats) private readonly nats: Nats,
    @Inject(LOGGER) private readonly logger: Logger,
    @Inject(Metrics) private readonly metrics: Metrics,
    @Inject(UsageIngest) private readonly usage: UsageIngest,
    @Inject(ActivityIngest) private readonly activity: ActivityIngest,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    await ensureStream(this.nats, usageStreamSpec(this.config));
    const limits = eventTimeLimits(this.config);
    const common = {
      stream: USAGE_STREAM,
      deadLetterSubject: DLQ_USAGE,
      maxBatch: this.config.USAGE_BATCH_SIZE,
      concurrency: this.config.USAGE_INGEST_CONCURRENCY,
      maxAckPending: this.config.USAGE_BATCH_SIZE * 4,
    };
    const records = new BatchConsumer(
      this.nats,
      {
        ...common,
        durable: 'usage-records',
        filterSubject: 'usage.events.*',
        schema: UsageEventSchema,
        check: eventCheck(usageEventTimeProblems, limits),
      },
      (items) => this.usage.ingest(items),
      this.logger,
      this.metrics,
    );
    const activity = new BatchConsumer(
      this.nats,
      {
        ...common,
        durable: 'usage-activity',
        filterSubject: 'activity.events.*',
        schema: ActivityEventSchema,
        check: eventCheck(activityEventTimeProblems, limits),
      },
      (items) => this.activity.ingest(items),
      this.logger,
      this.metrics,
    );
    await records.start();
    await activity.start();
    this.consumers = [records, activity];
  }

  async onModuleDestroy(): Promise<void> {
    await Promise.all(this.consumers.map((c) => c.stop()));
  }
}
