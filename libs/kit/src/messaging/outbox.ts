import { defineEntity, p, type EntityManager, type MikroORM } from '@mikro-orm/postgresql';
import { Migration } from '@mikro-orm/migrations';
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
    /** Rows from before relayed rows were deleted at once: purged after the retention. */
    publishedAt: p.datetime().nullable(),
    /**
     * Set on an event that only the newest of counts (absolute values, see `coalesceInOutbox`):
     * at most one such row waits per key, and it is relayed once `coalescedDelayMs` has passed.
     */
    coalesceKey: p.string().length(255).nullable().unique('outbox_coalesce_key_unique'),
  },
  indexes: [{ properties: ['publishedAt', 'id'] }],
});

/** The outbox's coalescing key, the same in every service's schema: services list this in their migrations. */
export class OutboxCoalesceMigration extends Migration {
  override up(): void {
    this.addSql(`alter table "outbox" add column if not exists "coalesce_key" varchar(255) null;`);
    this.addSql(`create unique index if not exists "outbox_coalesce_key_unique" on "outbox" ("coalesce_key");`);
  }

  override down(): void {
    this.addSql(`drop index if exists "outbox_coalesce_key_unique";`);
    this.addSql(`alter table "outbox" drop column if exists "coalesce_key";`);
  }
}

/**
 * The SQL that writes an event whose newest value is all that counts (a session's counters,
 * announced as absolute values with a version) under `key`: while a row with that key waits,
 * it takes the new payload (and a new id, so the stream's duplicate window never drops the
 * newer value); the relay sends it `coalescedDelayMs` after the first write, so a busy key
 * is announced about once per delay, never with less than its latest value. Parameters: id,
 * subject, payload (jsonb text or expression), headers (jsonb), key — or use it as the tail
 * of an `insert … select`.
 */
export const COALESCE_ON_CONFLICT = `on conflict ("coalesce_key") do update set id = excluded.id, payload = excluded.payload, headers = excluded.headers`;

/** Adds (or refreshes) a coalesced event in `em`'s transaction (see COALESCE_ON_CONFLICT). */
export async function coalesceInOutbox<S extends z.ZodType>(
  em: EntityManager,
  event: DomainEventContract<S>,
  payload: z.input<S>,
  key: string,
): Promise<void> {
  await em.execute(
    `insert into outbox (id, subject, payload, headers, created_at, coalesce_key) values (?, ?, ?::jsonb, ?::jsonb, now(), ?) ${COALESCE_ON_CONFLICT}`,
    [uuidv7(), event.subject, JSON.stringify(event.schema.parse(payload)), JSON.stringify(traceCarrier()), key],
  );
}

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
    coalesceKey: null,
  });
}

interface OutboxRow {
  id: string;
  subject: string;
  payload: unknown;
  headers: Record<string, string>;
}

const tracer = trace.getTracer('@parley/kit/outbox');

/** How long a coalesced row waits after its first write before it is relayed. */
export const COALESCED_DELAY_MS = 500;
/** Rows marked published by earlier versions are purged at most this often. */
const PURGE_EVERY_MS = 10 * 60 * 1000;

/**
 * Publishes outbox rows to JetStream with `Nats-Msg-Id` = row id, then deletes them in the
 * same transaction, so a row published twice (a crash between publish and commit) is dropped
 * by the stream's duplicate window. Instances share the work through `for update skip
 * locked`. A batch's rows are published together (one connection keeps their order) and
 * their acks awaited together. Coalesced rows wait `coalescedDelayMs` after their first write.
 */
export class OutboxRelay {
  private readonly task: BackgroundTask;
  private readonly js: JetStreamClient;

  constructor(
    private readonly orm: MikroORM,
    private readonly nats: Nats,
    private readonly logger: Logger,
    private readonly metrics: Metrics,
    private readonly options: {
      batchSize?: number;
      pollMs?: number;
      retentionMs?: number;
      coalescedDelayMs?: number;
    } = {},
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

  private lastPurge = 0;

  private async pass(): Promise<void> {
    // Nothing can be relayed while NATS is away; the next pass after it is back catches up.
    if (!this.nats.connected) return;
    try {
      let relayed: number;
      do {
        relayed = await this.relayBatch();
      } while (relayed === (this.options.batchSize ?? 100) && !this.task.isStopped);
      if (Date.now() - this.lastPurge > PURGE_EVERY_MS) {
        this.lastPurge = Date.now();
        await this.purge();
      }
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
      const rows = await tx.execute<OutboxRow[]>(
        `select id, subject, payload, headers from outbox
         where published_at is null and (coalesce_key is null or created_at <= now() - make_interval(secs => ?))
         order by id limit ? for update skip locked`,
        [(this.options.coalescedDelayMs ?? COALESCED_DELAY_MS) / 1000, this.options.batchSize ?? 100],
      );
      if (rows.length === 0) return 0;
      await Promise.all(rows.map((row) => this.publish(row)));
      await tx.execute(`delete from outbox where id in (?)`, [rows.map((r) => r.id)]);
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
        // A connection lost meanwhile fails the pass at once, rather than holding its rows
        // locked until the publish times out; the rows go out again under the same ids.
        await this.nats.whileConnected(() =>
          this.js.publish(this.nats.subject(row.subject), JSON.stringify(row.payload), {
            msgID: row.id,
            headers: h,
          }),
        );
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
