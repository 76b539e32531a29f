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
import { DEAD_LETTER_EVENT_BYTES, Headers, MAX_WIRE_JSON_DEPTH, ParleyError, type DeadLetter } from '@parley/contracts';
import type { z } from 'zod';
import type { Logger } from '../observability/logger';
import type { Metrics } from '../observability/metrics';
import { untilAnswered } from './jetstream';
import type { Nats } from './nats';
import { contextFromHeaders, recordError } from './trace';
import { header, nestsDeeperThan, parseJsonBytes, safeHeaders } from './wire';

export interface PullConsumerSpec {
  /** Stream name without the deployment prefix. */
  stream: string;
  durable: string;
  /** One subject filter (NATS 2.9 has no `filter_subjects`), without the prefix. */
  filterSubject: string;
  /** Dead-letter subject, without the prefix. */
  deadLetterSubject: string;
  ackWaitMs?: number;
  /** Server-side bound on deliveries; -1 for none (the consumer bounds them itself). */
  maxDeliver?: number;
  maxAckPending?: number;
  /** Messages the client asks the server for at a time. */
  maxMessages?: number;
}

export interface ConsumerSpec<S extends z.ZodType> extends PullConsumerSpec {
  schema: S;
  /** Delay before each redelivery of a failed message; the last one repeats. */
  backoffMs?: number[];
}

export interface DeliveryMeta {
  subject: string;
  deliveryCount: number;
  streamSequence: number;
  msgId: string | undefined;
  /** When the stream stored the message (ms since the epoch). */
  storedAt: number;
}

export const deliveryMeta = (msg: JsMsg, subject: string): DeliveryMeta => ({
  subject,
  deliveryCount: msg.info.deliveryCount,
  streamSequence: msg.info.streamSequence,
  msgId: header(msg, Headers.msgId),
  storedAt: Math.floor(msg.info.timestampNanos / 1e6),
});

/** The parsed payload and its schema verdict, or why it cannot be read at all. */
export type Decoded<S extends z.ZodType> =
  | { ok: true; raw: unknown; event: z.output<S> }
  | { ok: false; raw: unknown; code: 'NOT_JSON' | 'INVALID_EVENT'; reason: string };

export function decode<S extends z.ZodType>(msg: JsMsg, schema: S): Decoded<S> {
  if (nestsDeeperThan(msg.data, MAX_WIRE_JSON_DEPTH)) {
    const reason = `payload nests deeper than ${MAX_WIRE_JSON_DEPTH} levels`;
    return { ok: false, raw: msg.string(), code: 'INVALID_EVENT', reason };
  }
  let raw: unknown;
  try {
    if (msg.data.length === 0) throw new Error('empty');
    raw = parseJsonBytes(msg.data);
  } catch {
    return { ok: false, raw: msg.string(), code: 'NOT_JSON', reason: 'payload is not JSON' };
  }
  let parsed: z.ZodSafeParseResult<z.output<S>>;
  try {
    parsed = schema.safeParse(raw) as z.ZodSafeParseResult<z.output<S>>;
  } catch {
    return { ok: false, raw: msg.string(), code: 'INVALID_EVENT', reason: 'invalid event: nested too deeply to read' };
  }
  if (parsed.success) return { ok: true, raw, event: parsed.data };
  const reason = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
  return { ok: false, raw, code: 'INVALID_EVENT', reason: `invalid event: ${reason}` };
}

/** How often a consumer records its lag (`parley_consumer_pending`). */
const LAG_INTERVAL_MS = 5000;

/**
 * How long one pull request waits on the server. The server sends idle heartbeats every half
 * of it, and the client pulls again after two are missed: a pull lost with a NATS node (or
 * held by a consumer leader that moved) is replaced within about this long. nats.js's default,
 * 30 s, left a consumer idle for ~40 s after a node of a cluster was killed (docs/decisions/0026).
 */
export const PULL_EXPIRES_MS = 10_000;

/**
 * What every durable pull consumer shares: provisioning the consumer idempotently, a
 * consume loop restarted after failure, dead letters with their reason, and lag metrics.
 */
export abstract class PullConsumer {
  protected messages: ConsumerMessages | undefined;
  protected stopped = false;
  /** Deliveries already acked, nak'd or terminated. */
  protected readonly settled = new WeakSet<JsMsg>();
  private loop: Promise<void> | undefined;
  private lagTimer: NodeJS.Timeout | undefined;
  /** The consumer's backlog as the last delivery carried it, and when that delivery came. */
  private deliveredPending = 0;
  private deliveredAt = 0;
  protected readonly js: JetStreamClient;

  constructor(
    protected readonly nats: Nats,
    private readonly pull: PullConsumerSpec,
    protected readonly logger: Logger,
    protected readonly metrics: Metrics,
  ) {
    this.js = jetstream(nats.connection);
  }

  get durable(): string {
    return this.pull.durable;
  }

  protected get ackWaitMs(): number {
    return this.pull.ackWaitMs ?? 30_000;
  }

  async start(): Promise<void> {
    await this.ensure();
    this.loop = this.run();
    this.lagTimer = setInterval(() => void this.recordLag(), LAG_INTERVAL_MS);
    this.lagTimer.unref();
  }

  private async ensure(): Promise<void> {
    const jsm = await jetstreamManager(this.nats.connection);
    const stream = this.nats.stream(this.pull.stream);
    const tuning = {
      max_deliver: this.pull.maxDeliver ?? 5,
      ack_wait: nanos(this.pull.ackWaitMs ?? 30_000),
      max_ack_pending: this.pull.maxAckPending ?? 1000,
    };
    await untilAnswered(`provisioning the consumer ${this.pull.durable} of ${stream}`, async () => {
      try {
        await jsm.consumers.info(stream, this.pull.durable);
        await jsm.consumers.update(stream, this.pull.durable, tuning);
      } catch (error) {
        if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.ConsumerNotFound) {
          const config: Partial<ConsumerConfig> = {
            durable_name: this.pull.durable,
            ack_policy: AckPolicy.Explicit,
            deliver_policy: DeliverPolicy.All,
            filter_subject: this.nats.subject(this.pull.filterSubject),
            ...tuning,
          };
          await jsm.consumers.add(stream, config);
          return;
        }
        throw error;
      }
    });
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      try {
        const consumer = await this.js.consumers.get(this.nats.stream(this.pull.stream), this.pull.durable);
        this.messages = await consumer.consume({
          max_messages: this.pull.maxMessages ?? 100,
          expires: PULL_EXPIRES_MS,
          ...this.consumeOptions(),
        });
        await this.drain(this.messages);
      } catch (error) {
        if (this.stopped) break;
        // The failed loop's subscription must not keep pulling beside the next one.
        await this.messages?.close().catch(() => undefined);
        this.logger.warn({ err: error, durable: this.pull.durable }, 'consumer loop failed; restarting');
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    }
  }

  /** Handles what the consume loop delivers until it ends. */
  protected abstract drain(messages: ConsumerMessages): Promise<void>;

  /** Extra options of the consume call (a callback instead of the iterator). */
  protected consumeOptions(): { callback?: (msg: JsMsg) => void } {
    return {};
  }

  /**
   * Publishes `{ reason, code, subject, event, received_at, deliveries }` and terminates the
   * message. An original too large to carry travels as its first bytes (`event_truncated`,
   * `event_text`, `stream_seq`), so the letter itself always fits.
   */
  protected async deadLetter(msg: JsMsg, subject: string, code: string, reason: string, event: unknown): Promise<void> {
    const letter: DeadLetter = {
      reason: reason.length > 2000 ? `${reason.slice(0, 2000)}…` : reason,
      code,
      subject,
      ...carriedEvent(msg, event),
      received_at: new Date().toISOString(),
      deliveries: msg.info.deliveryCount,
    };
    let body: string;
    try {
      body = JSON.stringify(letter);
    } catch {
      // An original nested too deeply to write again travels as its text.
      body = JSON.stringify({ ...letter, event: undefined, ...truncatedEvent(msg) });
    }
    await this.js.publish(this.nats.subject(this.pull.deadLetterSubject), body, {
      msgID: `${this.pull.durable}:${msg.info.streamSequence}`,
    });
    // No reason on the term: NATS 2.9 does not understand `+TERM <reason>` and redelivers the
    // message; the reason travels in the dead letter instead.
    msg.term();
    this.settled.add(msg);
    this.metrics.deadLetters.inc({ subject: this.pull.deadLetterSubject, code });
    this.metrics.eventsProcessed.inc({ consumer: this.pull.durable, outcome: 'dead_letter' });
    this.logger.warn({ subject, code, reason }, 'event dead-lettered');
  }

  /** Notes the backlog behind a delivery (its reply subject carries the consumer's `num_pending`). */
  protected delivered(msg: JsMsg): void {
    this.deliveredPending = msg.info.pending;
    this.deliveredAt = Date.now();
  }

  /**
   * The lag gauge. While deliveries flow, the last one tells the backlog and no request is made:
   * reading the consumer's info from the server while it serves a backlog (NATS 2.9) can stall
   * its deliveries to the open pull requests for seconds, and a batch consumer then takes the
   * rest in small batches. When nothing was delivered since the last reading (idle, or stuck),
   * the consumer's info is asked for.
   */
  private async recordLag(): Promise<void> {
    if (Date.now() - this.deliveredAt < LAG_INTERVAL_MS) {
      this.metrics.consumerPending.set({ consumer: this.pull.durable }, this.deliveredPending);
      return;
    }
    try {
      const consumer = await this.js.consumers.get(this.nats.stream(this.pull.stream), this.pull.durable);
      const info = await consumer.info(true);
      this.metrics.consumerPending.set({ consumer: this.pull.durable }, info.num_pending);
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

const tracer = trace.getTracer('@parley/kit/consumer');

/**
 * A durable pull consumer of one message at a time: acks after the handler's work is
 * committed, redelivers failures with backoff up to `maxDeliver`, and sends what can
 * never succeed (bad JSON, schema, a 4xx-class ParleyError, exhausted deliveries) to the
 * dead-letter subject with the reason, so no message stops the consumer.
 */
export class DurableConsumer<S extends z.ZodType> extends PullConsumer {
  constructor(
    nats: Nats,
    private readonly spec: ConsumerSpec<S>,
    private readonly handler: (event: z.output<S>, meta: DeliveryMeta) => Promise<void>,
    logger: Logger,
    metrics: Metrics,
  ) {
    super(nats, spec, logger, metrics);
  }

  private get maxDeliver(): number {
    return this.spec.maxDeliver ?? 5;
  }

  protected async drain(messages: ConsumerMessages): Promise<void> {
    for await (const msg of messages) {
      this.delivered(msg);
      await this.handle(msg);
    }
  }

  private async handle(msg: JsMsg): Promise<void> {
    const subject = this.nats.unprefixed(msg.subject);
    const deliveryCount = msg.info.deliveryCount;
    if (deliveryCount > 1) this.metrics.redeliveries.inc({ consumer: this.spec.durable });
    await tracer.startActiveSpan(
      `${subject} process`,
      { kind: SpanKind.CONSUMER, attributes: { 'messaging.system': 'nats', 'messaging.destination.name': subject } },
      contextFromHeaders(safeHeaders(msg).headers),
      async (span) => {
        try {
          const decoded = decode(msg, this.spec.schema);
          if (!decoded.ok) {
            await this.deadLetter(msg, subject, decoded.code, decoded.reason, decoded.raw);
            return;
          }
          try {
            await this.handler(decoded.event, deliveryMeta(msg, subject));
            msg.ack();
            this.metrics.eventsProcessed.inc({ consumer: this.spec.durable, outcome: 'ok' });
          } catch (error) {
            recordError(span, error);
            if (error instanceof ParleyError && !error.retryable && error.status < 500) {
              await this.deadLetter(msg, subject, 'REJECTED', `${error.code}: ${error.detail}`, decoded.raw);
            } else if (deliveryCount >= this.maxDeliver) {
              const why = error instanceof Error ? error.message : String(error);
              await this.deadLetter(
                msg,
                subject,
                'UNDELIVERABLE',
                `failed after ${deliveryCount} deliveries: ${why}`,
                decoded.raw,
              );
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
}

/** The original event as a dead letter carries it: whole, or its first bytes when too large. */
function carriedEvent(
  msg: JsMsg,
  event: unknown,
): Pick<DeadLetter, 'event' | 'event_truncated' | 'event_text' | 'stream_seq'> {
  if (msg.data.length <= DEAD_LETTER_EVENT_BYTES) return { event };
  return truncatedEvent(msg);
}

function truncatedEvent(msg: JsMsg): Pick<DeadLetter, 'event_truncated' | 'event_text' | 'stream_seq'> {
  const head = msg.data.subarray(0, DEAD_LETTER_EVENT_BYTES);
  // Cut at a character boundary: a torn UTF-8 sequence at the end is dropped, not replaced.
  const text = new TextDecoder('utf-8').decode(head).replace(/\uFFFD$/, '');
  return { event_truncated: true, event_text: text, stream_seq: msg.info.streamSequence };
}
