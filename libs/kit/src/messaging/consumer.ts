import {
  AckPolicy,
  DeliverPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  jetstream,
  jetstreamManager,
  type ConsumerConfig,
  type ConsumerMessages,
  type JetStreamClient,
  type JsMsg,
} from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import { SpanKind, trace } from '@opentelemetry/api';
import { DLQ_DOMAIN, DOMAIN_STREAM, ParleyError, type DeadLetter } from '@parley/contracts';
import type { z } from 'zod';
import type { Logger } from '../observability/logger';
import type { Metrics } from '../observability/metrics';
import type { Nats } from './nats';
import { recordError } from './rpc';
import { contextFromHeaders } from './trace';
import { DOMAIN_STREAM_SPEC, ensureStream } from './jetstream';

export interface ConsumerSpec<S extends z.ZodType> {
  /** Stream name without the deployment prefix. */
  stream: string;
  durable: string;
  /** One subject filter (NATS 2.9 has no `filter_subjects`), without the prefix. */
  filterSubject: string;
  schema: S;
  /** Dead-letter subject, without the prefix. */
  deadLetterSubject: string;
  maxDeliver?: number;
  ackWaitMs?: number;
  /** Delay before each redelivery of a failed message; the last one repeats. */
  backoffMs?: number[];
  maxMessages?: number;
}

export interface DeliveryMeta {
  subject: string;
  deliveryCount: number;
  streamSequence: number;
  msgId: string | undefined;
}

const tracer = trace.getTracer('@parley/kit/consumer');

/**
 * A durable pull consumer: handles each message, acks after the handler's work is
 * committed, redelivers failures with backoff up to `maxDeliver`, and sends what can
 * never succeed (bad JSON, schema, a 4xx-class ParleyError, exhausted deliveries) to the
 * dead-letter subject with the reason, so no message stops the consumer.
 */
export class DurableConsumer<S extends z.ZodType> {
  private messages: ConsumerMessages | undefined;
  private stopped = false;
  private loop: Promise<void> | undefined;
  private lagTimer: NodeJS.Timeout | undefined;
  private readonly js: JetStreamClient;

  constructor(
    private readonly nats: Nats,
    private readonly spec: ConsumerSpec<S>,
    private readonly handler: (event: z.output<S>, meta: DeliveryMeta) => Promise<void>,
    private readonly logger: Logger,
    private readonly metrics: Metrics,
  ) {
    this.js = jetstream(nats.connection);
  }

  private get maxDeliver(): number {
    return this.spec.maxDeliver ?? 5;
  }

  async start(): Promise<void> {
    await this.ensure();
    this.loop = this.run();
    this.lagTimer = setInterval(() => void this.recordLag(), 5000);
    this.lagTimer.unref();
  }

  private async ensure(): Promise<void> {
    const jsm = await jetstreamManager(this.nats.connection);
    const stream = this.nats.stream(this.spec.stream);
    const config: Partial<ConsumerConfig> = {
      durable_name: this.spec.durable,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      filter_subject: this.nats.subject(this.spec.filterSubject),
      max_deliver: this.maxDeliver,
      ack_wait: nanos(this.spec.ackWaitMs ?? 30_000),
      max_ack_pending: 1000,
    };
    try {
      await jsm.consumers.info(stream, this.spec.durable);
      await jsm.consumers.update(stream, this.spec.durable, {
        max_deliver: config.max_deliver,
        ack_wait: config.ack_wait,
        max_ack_pending: config.max_ack_pending,
      });
    } catch (error) {
      if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.ConsumerNotFound) {
        await jsm.consumers.add(stream, config);
        return;
      }
      throw error;
    }
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      try {
        const consumer = await this.js.consumers.get(this.nats.stream(this.spec.stream), this.spec.durable);
        this.messages = await consumer.consume({ max_messages: this.spec.maxMessages ?? 100 });
        for await (const msg of this.messages) {
          await this.handle(msg);
        }
      } catch (error) {
        if (this.stopped) break;
        this.logger.warn({ err: error, durable: this.spec.durable }, 'consumer loop failed; restarting');
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    }
  }

  private async handle(msg: JsMsg): Promise<void> {
    const subject = this.nats.unprefixed(msg.subject);
    const deliveryCount = msg.info.deliveryCount;
    if (deliveryCount > 1) this.metrics.redeliveries.inc({ consumer: this.spec.durable });
    await tracer.startActiveSpan(
      `${subject} process`,
      { kind: SpanKind.CONSUMER, attributes: { 'messaging.system': 'nats', 'messaging.destination.name': subject } },
      contextFromHeaders(msg.headers),
      async (span) => {
        try {
          let raw: unknown;
          try {
            raw = msg.json();
          } catch {
            await this.deadLetter(msg, subject, 'payload is not JSON', msg.string());
            return;
          }
          const parsed = this.spec.schema.safeParse(raw);
          if (!parsed.success) {
            const reason = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
            await this.deadLetter(msg, subject, `invalid event: ${reason}`, raw);
            return;
          }
          try {
            await this.handler(parsed.data, {
              subject,
              deliveryCount,
              streamSequence: msg.info.streamSequence,
              msgId: msg.headers?.get('Nats-Msg-Id') || undefined,
            });
            msg.ack();
            this.metrics.eventsProcessed.inc({ consumer: this.spec.durable, outcome: 'ok' });
          } catch (error) {
            recordError(span, error);
            if (error instanceof ParleyError && !error.retryable && error.status < 500) {
              await this.deadLetter(msg, subject, `${error.code}: ${error.detail}`, raw);
            } else if (deliveryCount >= this.maxDeliver) {
              const why = error instanceof Error ? error.message : String(error);
              await this.deadLetter(msg, subject, `failed after ${deliveryCount} deliveries: ${why}`, raw);
            } else {
              const backoff = this.spec.backoffMs ?? [1000, 5000, 15000, 60000];
              msg.nak(backoff[Math.min(deliveryCount - 1, backoff.length - 1)]);
              this.metrics.eventsProcessed.inc({ consumer: this.spec.durable, outcome: 'retry' });
              this.logger.warn({ err: error, subject, deliveryCount }, 'event handling failed; will redeliver');
            }
          }
        } finally {
          span.end();
        }
      },
    );
  }

  private async deadLetter(msg: JsMsg, subject: string, reason: string, event: unknown): Promise<void> {
    const letter: DeadLetter = {
      reason,
      subject,
      event,
      received_at: new Date().toISOString(),
      deliveries: msg.info.deliveryCount,
    };
    await this.js.publish(this.nats.subject(this.spec.deadLetterSubject), JSON.stringify(letter), {
      msgID: `${this.spec.durable}:${msg.info.streamSequence}`,
    });
    msg.term(reason.slice(0, 200));
    this.metrics.deadLetters.inc({ subject: this.spec.deadLetterSubject });
    this.metrics.eventsProcessed.inc({ consumer: this.spec.durable, outcome: 'dead_letter' });
    this.logger.warn({ subject, reason }, 'event dead-lettered');
  }

  private async recordLag(): Promise<void> {
    try {
      const consumer = await this.js.consumers.get(this.nats.stream(this.spec.stream), this.spec.durable);
      const info = await consumer.info(true);
      this.metrics.consumerPending.set({ consumer: this.spec.durable }, info.num_pending);
    } catch {
      // lag is best effort; the next tick tries again
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.lagTimer);
    await this.messages?.close();
    await this.loop;
  }
}

/**
 * Starts a durable consumer of one domain event (stream `DOMAIN`, dead letters to
 * `dlq.domain`), creating the stream first if this service is the first to need it.
 */
export async function consumeDomainEvent<S extends z.ZodType>(
  nats: Nats,
  logger: Logger,
  metrics: Metrics,
  options: {
    durable: string;
    event: { subject: string; schema: S };
    handle: (event: z.output<S>, meta: DeliveryMeta) => Promise<void>;
  },
): Promise<DurableConsumer<S>> {
  await ensureStream(nats, DOMAIN_STREAM_SPEC);
  const consumer = new DurableConsumer(
    nats,
    {
      stream: DOMAIN_STREAM,
      durable: options.durable,
      filterSubject: options.event.subject,
      schema: options.event.schema,
      deadLetterSubject: DLQ_DOMAIN,
    },
    options.handle,
    logger,
    metrics,
  );
  await consumer.start();
  return consumer;
}
