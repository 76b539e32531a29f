import { defineEntity, p, type EntityManager, type MikroORM } from '@mikro-orm/postgresql';
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import { headers as natsHeaders } from '@nats-io/transport-node';
import { context, propagation, trace, SpanKind } from '@opentelemetry/api';
import { v7 as uuidv7 } from 'uuid';
import type { z } from 'zod';
import type { DomainEventContract } from '@parley/contracts';
import type { Logger } from '../observability/logger';
import type { Metrics } from '../observability/metrics';
import type { Nats } from './nats';
import { allowLongStatements } from '../persistence/orm';
import { BackgroundTask } from './background';
import { recordError, traceCarrier } from './trace';

/** A domain event written in the same transaction as the change it describes. */
export const OutboxEntry = defineEntity({
  name: 'OutboxEntry',
  tableName: 'outbox',
  properties: {
    id: p.uuid().primary(),
    subject: p.string().length(255),
    payload: p.json<unknown>(),
    headers: p.json<Record<string, string>>(),
    createdAt: p.datetime().defaultRaw('now()'),
    publishedAt: p.datetime().nullable(),
  },
  indexes: [{ properties: ['publishedAt', 'id'] }],
});

/** Adds an event to the outbox of the transaction `em` belongs to; it is relayed once that commits. */
export function addToOutbox<S extends z.ZodType>(
  em: EntityManager,
  event: DomainEventContract<S>,
  payload: z.input<S>,
): void {
  em.create(OutboxEntry, {
    id: uuidv7(),
    subject: event.subject,
    payload: event.schema.parse(payload),
    headers: traceCarrier(),
    createdAt: new Date(),
    publishedAt: null,
  });
}

interface OutboxRow {
  id: string;
  subject: string;
  payload: unknown;
  headers: Record<string, string>;
}

const tracer = trace.getTracer('@parley/kit/outbox');

/**
 * Publishes unrelayed outbox rows to JetStream with `Nats-Msg-Id` = row id, so a row
 * published twice (a crash between publish and mark) is dropped by the stream's duplicate
 * window. Instances share the work through `for update skip locked`.
 */
export class OutboxRelay {
  private readonly task: BackgroundTask;
  private readonly js: JetStreamClient;

  constructor(
    private readonly orm: MikroORM,
    private readonly nats: Nats,
    private readonly logger: Logger,
    private readonly metrics: Metrics,
    private readonly options: { batchSize?: number; pollMs?: number; retentionMs?: number } = {},
  ) {
    this.js = jetstream(nats.connection);
    // Relay passes belong to no request's trace; each row's publish continues the trace that wrote it.
    this.task = new BackgroundTask(() => this.pass(), options.pollMs ?? 500);
  }

  start(): void {
    this.task.start();
  }

  /** Asks for a relay pass now (after a commit that wrote to the outbox). */
  kick(): void {
    this.task.kick();
  }

  private async pass(): Promise<void> {
    try {
      let relayed: number;
      do {
        relayed = await this.relayBatch();
      } while (relayed === (this.options.batchSize ?? 100) && !this.task.isStopped);
      await this.purge();
    } catch (error) {
      this.logger.warn(
        { err: error instanceof Error ? error.message : String(error) },
        'outbox relay pass failed; will retry',
      );
    }
  }

  /** One batch; returns how many rows it relayed. */
  async relayBatch(): Promise<number> {
    const em = this.orm.em.fork();
    return em.transactional(async (tx) => {
      await allowLongStatements(tx);
      const rows = await tx.execute<OutboxRow[]>(
        `select id, subject, payload, headers from outbox where published_at is null order by id limit ? for update skip locked`,
        [this.options.batchSize ?? 100],
      );
      if (rows.length === 0) return 0;
      for (const row of rows) await this.publish(row);
      await tx.execute(`update outbox set published_at = now() where id in (?)`, [rows.map((r) => r.id)]);
      this.metrics.outboxPublished.inc(rows.length);
      return rows.length;
    });
  }

  private async publish(row: OutboxRow): Promise<void> {
    const parent = propagation.extract(context.active(), row.headers ?? {});
    await tracer.startActiveSpan(`${row.subject} publish`, { kind: SpanKind.PRODUCER }, parent, async (span) => {
      try {
        const h = natsHeaders();
        propagation.inject(context.active(), h, { set: (c, k, v) => c.set(k, v) });
        await this.js.publish(this.nats.subject(row.subject), JSON.stringify(row.payload), {
          msgID: row.id,
          headers: h,
        });
      } catch (error) {
        recordError(span, error);
        throw error;
      } finally {
        span.end();
      }
    });
  }

  private async purge(): Promise<void> {
    const retention = this.options.retentionMs ?? 60 * 60 * 1000;
    await this.orm.em.fork().transactional(async (tx) => {
      await allowLongStatements(tx);
      await tx.execute(`delete from outbox where published_at < now() - make_interval(secs => ?)`, [retention / 1000]);
    });
  }

  async backlog(): Promise<number> {
    const [row] = await this.orm.em
      .fork()
      .execute<{ n: string }[]>(`select count(*) as n from outbox where published_at is null`);
    return Number(row?.n ?? 0);
  }

  async stop(): Promise<void> {
    await this.task.stop();
  }
}
