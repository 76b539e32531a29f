import type { ConsumerMessages, JsMsg } from '@nats-io/jetstream';
import { ROOT_CONTEXT, SpanKind, trace, type Link } from '@opentelemetry/api';
import type { z } from 'zod';
import type { Logger } from '../observability/logger';
import type { Metrics } from '../observability/metrics';
import { PullConsumer, decode, deliveryMeta, type Decoded, type DeliveryMeta, type PullConsumerSpec } from './consumer';
import { isConflictError, isInfrastructureError, isInputError } from './failures';
import type { Nats } from './nats';
import { contextFromHeaders, recordError } from './trace';
import { safeHeaders } from './wire';

export interface BatchItem<T> {
  event: T;
  raw: unknown;
  meta: DeliveryMeta;
}

/** What became of one event of a batch: done (acked), or refused for good (dead-lettered). */
export type BatchVerdict = { ok: true } | { ok: false; code: string; reason: string };

export interface BatchConsumerSpec<S extends z.ZodType> extends PullConsumerSpec {
  schema: S;
  /** Most events handed to the handler at once. */
  maxBatch?: number;
  /**
   * Batches handled at the same time by this instance (each in its own transaction), as if
   * that many instances shared the consumer. The handler must be safe under concurrency.
   */
  concurrency?: number;
  /** Deliveries after which an event that still fails on its own is dead-lettered. */
  poisonDeliveries?: number;
  /** Delay before each redelivery of an event that failed on its own; the last one repeats. */
  backoffMs?: number[];
  /** Checks a schema cannot make (the subject, the clock): a refusal is dead-lettered at once. */
  check?: (event: z.output<S>, meta: DeliveryMeta) => { code: string; reason: string } | undefined;
  /**
   * Events of one key are handled in the order they arrived: while a batch holding some is
   * being handled, later ones of the key wait in the buffer instead of going to another
   * worker, whose batch could commit first. (Across instances there is no such order; and an
   * event that fails on its own and waits for its redelivery does not hold its key meanwhile.)
   */
  key?: (event: z.output<S>) => string;
}

const tracer = trace.getTracer('@parley/kit/batch-consumer');
const CONFLICT_RETRIES = 5;
const PAUSE_MS = [500, 1000, 2000, 5000, 10_000, 30_000];
/** Delay before a batch that could not be settled is delivered again. */
const UNSETTLED_RETRY_MS = 1000;

/**
 * A durable pull consumer that hands events to its handler in batches (as many as have
 * arrived, up to `maxBatch`) so the handler can write them in a few statements. Acks follow
 * the handler's commit. What never succeeds is dead-lettered with its reason:
 * - bad JSON, a schema or `check` failure: at once;
 * - a batch that fails is retried event by event, so one poison event cannot sink the others;
 *   an event refused as bad input on its own is dead-lettered, any other lone failure is
 *   redelivered with backoff up to `poisonDeliveries`;
 * - while a dependency is away (Postgres down, an upstream service unanswering) the batch is
 *   held and retried in place without spending deliveries.
 * Unsettled deliveries get progress acks every third of the ack wait, so nothing is redelivered
 * while it is still being handled.
 */
export class BatchConsumer<S extends z.ZodType> extends PullConsumer {
  private buffer: JsMsg[] = [];
  /** Idle workers waiting for deliveries, or for a key to be released. */
  private waiting: (() => void)[] = [];
  /** Keys of the events in batches being handled. */
  private readonly held = new Set<string>();
  /** Each delivery decoded once: to find its key when taken, and to hand it over. */
  private readonly decodedMsgs = new WeakMap<JsMsg, Decoded<S>>();

  constructor(
    nats: Nats,
    private readonly spec: BatchConsumerSpec<S>,
    private readonly handler: (items: BatchItem<z.output<S>>[]) => Promise<BatchVerdict[]>,
    logger: Logger,
    metrics: Metrics,
  ) {
    super(
      nats,
      { maxDeliver: -1, ...spec, maxMessages: spec.maxMessages ?? (spec.maxBatch ?? 500) * 2 },
      logger,
      metrics,
    );
  }

  private get maxBatch(): number {
    return this.spec.maxBatch ?? 500;
  }

  /**
   * Deliveries land in a buffer (callback mode) and each of `concurrency` workers takes up to
   * `maxBatch` of them at a time. The server's `max_ack_pending` bounds the buffer. (The iterator's pending count
   * cannot tell "nothing more buffered": it counts its own pull requests as in flight.)
   */
  protected override consumeOptions() {
    return {
      callback: (msg: JsMsg) => {
        this.delivered(msg);
        // A redelivery of what is still buffered takes its place (its ack is the one that counts).
        const at = msg.info.deliveryCount > 1 ? this.buffer.findIndex((m) => m.seq === msg.seq) : -1;
        if (at >= 0) this.buffer[at] = msg;
        else this.buffer.push(msg);
        this.wakeAll();
      },
    };
  }

  private wakeAll(): void {
    const idle = this.waiting;
    this.waiting = [];
    for (const wake of idle) wake();
  }

  private decoded(msg: JsMsg): Decoded<S> {
    let decoded = this.decodedMsgs.get(msg);
    if (!decoded) {
      decoded = decode(msg, this.spec.schema);
      this.decodedMsgs.set(msg, decoded);
    }
    return decoded;
  }

  private keyOf(msg: JsMsg): string | undefined {
    const decoded = this.decoded(msg);
    if (!decoded.ok || !this.spec.key) return undefined;
    try {
      return this.spec.key(decoded.event);
    } catch {
      return undefined;
    }
  }

  /**
   * Up to `maxBatch` buffered deliveries in arrival order, passing over those of a key another
   * batch holds; the keys it takes are held until `release`.
   */
  private take(): { msgs: JsMsg[]; keys: string[] } {
    if (!this.spec.key) return { msgs: this.buffer.splice(0, this.maxBatch), keys: [] };
    const msgs: JsMsg[] = [];
    const left: JsMsg[] = [];
    const mine = new Set<string>();
    for (const msg of this.buffer) {
      if (msgs.length >= this.maxBatch) {
        left.push(msg);
        continue;
      }
      const key = this.keyOf(msg);
      if (key !== undefined && this.held.has(key) && !mine.has(key)) {
        left.push(msg);
        continue;
      }
      msgs.push(msg);
      if (key !== undefined && !mine.has(key)) {
        mine.add(key);
        this.held.add(key);
      }
    }
    this.buffer = left;
    return { msgs, keys: [...mine] };
  }

  private release(keys: string[]): void {
    for (const key of keys) this.held.delete(key);
    if (keys.length > 0) this.wakeAll();
  }

  protected async drain(messages: ConsumerMessages): Promise<void> {
    let closed = false;
    const onClosed = () => {
      closed = true;
      this.wakeAll();
    };
    void messages.closed().then(onClosed, onClosed);
    // What waits in the buffer while every worker is busy (or held) must not be redelivered either.
    const keepAlive = setInterval(
      () => {
        for (const msg of this.buffer) msg.working();
      },
      Math.max(200, Math.floor(this.ackWaitMs / 3)),
    );
    const worker = async () => {
      for (;;) {
        const { msgs, keys } = this.take();
        if (msgs.length > 0) {
          try {
            await this.process(msgs);
          } catch (error) {
            // What could not be settled (a dead letter NATS would not take, say) comes back
            // later; the worker goes on with the rest.
            this.logger.warn(
              { err: error, consumer: this.durable, size: msgs.length },
              'batch not settled; redelivering',
            );
            for (const msg of msgs) if (!this.settled.has(msg)) this.nak(msg, UNSETTLED_RETRY_MS);
          } finally {
            this.release(keys);
          }
          continue;
        }
        if (closed && this.buffer.length === 0) return;
        // Woken by a delivery, a released key, or the end of the subscription.
        await new Promise<void>((resolve) => this.waiting.push(resolve));
      }
    };
    try {
      await Promise.all(Array.from({ length: this.spec.concurrency ?? 1 }, () => worker()));
    } finally {
      clearInterval(keepAlive);
    }
  }

  private ack(msg: JsMsg): void {
    msg.ack();
    this.settled.add(msg);
  }

  private nak(msg: JsMsg, delayMs?: number): void {
    msg.nak(delayMs);
    this.settled.add(msg);
  }

  private async process(msgs: JsMsg[]): Promise<void> {
    // However long the work or a hold for an absent dependency takes, the server must not
    // redeliver what is still being handled: progress acks well inside the ack deadline.
    const keepAlive = setInterval(
      () => {
        for (const msg of msgs) if (!this.settled.has(msg)) msg.working();
      },
      Math.max(200, Math.floor(this.ackWaitMs / 3)),
    );
    try {
      await this.handleBatch(msgs);
    } finally {
      clearInterval(keepAlive);
    }
  }

  private async handleBatch(msgs: JsMsg[]): Promise<void> {
    const started = process.hrtime.bigint();
    const contexts = msgs.map((m) => contextFromHeaders(safeHeaders(m).headers));
    const traced = contexts.map((c) => trace.getSpanContext(c)).filter((c) => c !== undefined);
    // A batch continues the trace of its first traced event and links every other one.
    const parent = contexts.find((c) => trace.getSpanContext(c)) ?? ROOT_CONTEXT;
    const links: Link[] = traced.slice(1).map((context) => ({ context }));
    await tracer.startActiveSpan(
      `${this.spec.filterSubject} process`,
      {
        kind: SpanKind.CONSUMER,
        links,
        attributes: {
          'messaging.system': 'nats',
          'messaging.destination.name': this.spec.filterSubject,
          'messaging.batch.message_count': msgs.length,
        },
      },
      parent,
      async (span) => {
        try {
          const items: { msg: JsMsg; item: BatchItem<z.output<S>> }[] = [];
          for (const msg of msgs) {
            const meta = deliveryMeta(msg, this.nats.unprefixed(msg.subject));
            if (meta.deliveryCount > 1) this.metrics.redeliveries.inc({ consumer: this.durable });
            const decoded = this.decoded(msg);
            if (!decoded.ok) {
              await this.deadLetter(msg, meta.subject, decoded.code, decoded.reason, decoded.raw);
              continue;
            }
            const refused = this.spec.check?.(decoded.event, meta);
            if (refused) {
              await this.deadLetter(msg, meta.subject, refused.code, refused.reason, decoded.raw);
              continue;
            }
            items.push({ msg, item: { event: decoded.event, raw: decoded.raw, meta } });
          }
          // Events delivered several times already may be what sank earlier batches: alone, they
          // sink nothing. The later events of a suspect's key follow it one by one, in order.
          const suspectKeys = new Set<string>();
          const alone: typeof items = [];
          const rest: typeof items = [];
          for (const one of items) {
            const key = this.keyOf(one.msg);
            if (one.item.meta.deliveryCount > 2 || (key !== undefined && suspectKeys.has(key))) {
              alone.push(one);
              if (key !== undefined) suspectKeys.add(key);
            } else {
              rest.push(one);
            }
          }
          if (rest.length > 0) await this.settle(rest);
          for (const one of alone) await this.settle([one]);
        } catch (error) {
          recordError(span, error);
          throw error;
        } finally {
          span.end();
          if (this.logger.isLevelEnabled('debug')) {
            const ms = Number(process.hrtime.bigint() - started) / 1e6;
            this.logger.debug({ consumer: this.durable, size: msgs.length, ms }, 'batch handled');
          }
          this.metrics.consumerBatchSize.observe({ consumer: this.durable }, msgs.length);
          this.metrics.consumerBatchDuration.observe(
            { consumer: this.durable },
            Number(process.hrtime.bigint() - started) / 1e9,
          );
        }
      },
    );
  }

  /** Runs the handler on a batch and acts on its verdicts; a failing batch is split up. */
  private async settle(batch: { msg: JsMsg; item: BatchItem<z.output<S>> }[]): Promise<void> {
    let verdicts: BatchVerdict[] | undefined;
    try {
      verdicts = await this.attempt(batch);
    } catch (error) {
      if (this.stopped) {
        for (const { msg } of batch) this.nak(msg);
        return;
      }
      if (batch.length > 1) {
        this.logger.warn({ err: error, size: batch.length }, 'batch failed; retrying its events one by one');
        for (const one of batch) await this.settle([one]);
        return;
      }
      await this.failAlone(batch[0], error);
      return;
    }
    if (!verdicts) {
      for (const { msg } of batch) this.nak(msg);
      return;
    }
    let acked = 0;
    for (let i = 0; i < batch.length; i++) {
      const { msg, item } = batch[i];
      const verdict = verdicts[i] ?? { ok: false, code: 'POISON', reason: 'the handler gave no verdict' };
      if (verdict.ok) {
        this.ack(msg);
        acked += 1;
      } else {
        await this.deadLetter(msg, item.meta.subject, verdict.code, verdict.reason, item.raw);
      }
    }
    if (acked > 0) this.metrics.eventsProcessed.inc({ consumer: this.durable, outcome: 'ok' }, acked);
  }

  /**
   * The handler's verdicts; undefined when the consumer stopped while waiting for a
   * dependency. Lost races are retried at once; an absent dependency is waited for.
   */
  private async attempt(batch: { msg: JsMsg; item: BatchItem<z.output<S>> }[]): Promise<BatchVerdict[] | undefined> {
    let conflicts = 0;
    let pauses = 0;
    for (;;) {
      try {
        return await this.handler(batch.map((b) => b.item));
      } catch (error) {
        if (isConflictError(error) && conflicts < CONFLICT_RETRIES) {
          conflicts += 1;
          continue;
        }
        if (!isInfrastructureError(error)) throw error;
        const wait = PAUSE_MS[Math.min(pauses, PAUSE_MS.length - 1)];
        pauses += 1;
        this.metrics.eventsProcessed.inc({ consumer: this.durable, outcome: 'paused' }, batch.length);
        this.logger.warn(
          { err: error instanceof Error ? error.message : String(error), waitMs: wait, size: batch.length },
          'a dependency is unavailable; holding the batch',
        );
        await new Promise((resolve) => setTimeout(resolve, wait));
        if (this.stopped) return undefined;
      }
    }
  }

  private async failAlone(one: { msg: JsMsg; item: BatchItem<z.output<S>> }, error: unknown): Promise<void> {
    const { msg, item } = one;
    const why = error instanceof Error ? error.message : String(error);
    if (isInputError(error)) {
      await this.deadLetter(msg, item.meta.subject, 'POISON', `refused on its own: ${why}`, item.raw);
      return;
    }
    const deliveries = item.meta.deliveryCount;
    if (deliveries >= (this.spec.poisonDeliveries ?? 5)) {
      await this.deadLetter(
        msg,
        item.meta.subject,
        'UNDELIVERABLE',
        `failed after ${deliveries} deliveries: ${why}`,
        item.raw,
      );
      return;
    }
    const backoff = this.spec.backoffMs ?? [1000, 5000, 15000, 60000];
    this.nak(msg, backoff[Math.min(deliveries - 1, backoff.length - 1)]);
    this.metrics.eventsProcessed.inc({ consumer: this.durable, outcome: 'retry' });
    this.logger.warn({ err: error, subject: item.meta.subject, deliveries }, 'event failed on its own; will redeliver');
  }
}
