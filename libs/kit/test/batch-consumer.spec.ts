import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { z } from 'zod';
import type { DeadLetter } from '@parley/contracts';
import {
  BatchConsumer,
  Metrics,
  Nats,
  createLogger,
  ensureStream,
  type BatchConsumerSpec,
  type BatchItem,
  type BatchVerdict,
} from '../src';
import { NATS_URL, cleanupRun, runId } from '../../../test/support/stack';

const logger = createLogger('kit-batch-test', 'silent');
const id = runId('kbc');
const Event = z.object({ n: z.number().int(), note: z.string() });

async function eventually<T>(probe: () => T | undefined | Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const fail = (message: string, code?: string) => Object.assign(new Error(message), code ? { code } : {});

describe(BatchConsumer.name, () => {
  let nats: Nats;
  let metrics: Metrics;
  let consumer: BatchConsumer<typeof Event>;
  const done = new Map<number, number>();
  const batchSizes: number[] = [];
  let infraFailures = 0;

  beforeAll(async () => {
    nats = await Nats.connect({ url: NATS_URL, prefix: id, name: 'kit-batch-test', logger });
    metrics = new Metrics('kit-batch-test');
    await ensureStream(nats, {
      name: 'BATCH',
      subjects: ['kit.batch.>'],
      maxAgeMs: 3_600_000,
      duplicateWindowMs: 60_000,
    });
    await ensureStream(nats, { name: 'DLQ', subjects: ['dlq.kit'], maxAgeMs: 3_600_000, duplicateWindowMs: 60_000 });
    consumer = new BatchConsumer(
      nats,
      {
        stream: 'BATCH',
        durable: 'kit-batch',
        filterSubject: 'kit.batch.>',
        deadLetterSubject: 'dlq.kit',
        schema: Event,
        maxBatch: 50,
        ackWaitMs: 1000,
        poisonDeliveries: 3,
        backoffMs: [100],
        check: (event) => (event.note === 'unchecked' ? { code: 'CHECKED', reason: 'fails the check' } : undefined),
      },
      async (items) => {
        batchSizes.push(items.length);
        const notes = items.map((i) => i.event.note);
        if (notes.includes('poison')) throw fail('invalid input syntax for type uuid', '22P02');
        if (notes.includes('always')) throw new Error('a bug that never goes away');
        if (notes.includes('away') && infraFailures < 3) {
          infraFailures += 1;
          throw fail('connect ECONNREFUSED 127.0.0.1:5432', 'ECONNREFUSED');
        }
        return items.map((item): BatchVerdict => {
          if (item.event.note === 'refuse') return { ok: false, code: 'REFUSED', reason: 'the handler refuses it' };
          done.set(item.event.n, (done.get(item.event.n) ?? 0) + item.meta.deliveryCount * 1000 + 1);
          return { ok: true };
        });
      },
      logger,
      metrics,
    );
    await consumer.start();
  });

  afterAll(async () => {
    await consumer.stop();
    await nats.close();
    await cleanupRun(id);
  });

  const letters = async (atLeast: number): Promise<DeadLetter[]> => {
    const jsm = await jetstreamManager(nats.connection);
    return eventually(async () => {
      const info = await jsm.streams.info(nats.stream('DLQ'));
      if (info.state.messages < atLeast) return undefined;
      const out: DeadLetter[] = [];
      for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
        const msg = await jsm.streams.getMessage(nats.stream('DLQ'), { seq });
        if (msg) out.push(msg.json<DeadLetter>());
      }
      return out;
    });
  };

  it('handles events in batches, isolates a poison event, and dead-letters each refusal once', async () => {
    const js = jetstream(nats.connection);
    const subject = nats.subject('kit.batch.a');
    const publishes: Promise<unknown>[] = [];
    for (let n = 1; n <= 120; n++) {
      const note = n === 60 ? 'poison' : n === 61 ? 'refuse' : n === 62 ? 'always' : n === 63 ? 'unchecked' : 'ok';
      publishes.push(js.publish(subject, JSON.stringify({ n, note })));
    }
    publishes.push(js.publish(subject, '{not json'), js.publish(subject, JSON.stringify({ n: 'x', note: 'bad' })));
    await Promise.all(publishes);

    await eventually(() => (done.size === 116 ? true : undefined));
    const dead = await letters(6);
    // Wait past two ack deadlines: nothing dead-lettered comes back, nothing done is redone.
    await new Promise((r) => setTimeout(r, 2500));

    expect(done.size).toBe(116);
    for (const [n, tally] of done) {
      // Done once, on its first delivery (the poison's batch mates were retried in place, not redelivered).
      expect([n, tally]).toEqual([n, 1001]);
    }
    expect(Math.max(...batchSizes)).toBeGreaterThan(1);
    const byCode = new Map(dead.map((l) => [l.code, l]));
    expect([...byCode.keys()].sort()).toEqual(
      ['CHECKED', 'INVALID_EVENT', 'NOT_JSON', 'POISON', 'REFUSED', 'UNDELIVERABLE'].sort(),
    );
    expect(dead).toHaveLength(6);
    expect(byCode.get('POISON')).toMatchObject({ event: { n: 60, note: 'poison' }, subject: 'kit.batch.a' });
    expect(byCode.get('POISON')?.reason).toMatch(/invalid input syntax/);
    expect(byCode.get('UNDELIVERABLE')).toMatchObject({ event: { n: 62, note: 'always' }, deliveries: 3 });
    expect(byCode.get('REFUSED')?.reason).toBe('the handler refuses it');
    const info = await jetstreamManager(nats.connection).then((jsm) =>
      jsm.consumers.info(nats.stream('BATCH'), 'kit-batch'),
    );
    expect(info.num_ack_pending).toBe(0);
    expect(info.num_pending).toBe(0);
  });

  it('holds a batch while a dependency is away, without spending deliveries', async () => {
    const js = jetstream(nats.connection);
    await js.publish(nats.subject('kit.batch.b'), JSON.stringify({ n: 500, note: 'away' }));
    // These wait in the buffer behind the held batch, longer than the ack deadline.
    await eventually(() => (infraFailures >= 1 ? true : undefined));
    for (const n of [501, 502, 503]) await js.publish(nats.subject('kit.batch.b'), JSON.stringify({ n, note: 'ok' }));
    await eventually(() => done.get(503));
    for (const n of [501, 502, 503]) expect([n, done.get(n)]).toEqual([n, 1001]);
    await eventually(() => done.get(500));
    // Held for 3.5 s against an ack deadline of 1 s: progress acks kept it from being redelivered.
    expect(infraFailures).toBe(3);
    expect(done.get(500)).toBe(1001);
    const text = await metrics.registry.getSingleMetricAsString('parley_events_processed_total');
    expect(text).toMatch(/consumer="kit-batch",outcome="paused"[^}]*\} 3/);
  });
});

/**
 * A batch consumer on a stream of its own (`<name>` taking `<subject>`, durable `<name>`), in a run
 * of its own; `stop` undoes it all. Dead letters go to `dlq.kit`, which a `DLQ` stream takes,
 * unless `deadLetterSubject` names a subject no stream takes.
 */
async function ownConsumer<S extends z.ZodType>(
  name: string,
  subject: string,
  spec: Omit<BatchConsumerSpec<S>, 'stream' | 'durable' | 'filterSubject' | 'deadLetterSubject'> & {
    deadLetterSubject?: string;
  },
  handler: (items: BatchItem<z.output<S>>[]) => Promise<BatchVerdict[]>,
) {
  const run = runId('kbx');
  const nats = await Nats.connect({ url: NATS_URL, prefix: run, name: `kit-${name}-test`, logger });
  await ensureStream(nats, { name, subjects: [subject], maxAgeMs: 3_600_000, duplicateWindowMs: 60_000 });
  await ensureStream(nats, { name: 'DLQ', subjects: ['dlq.kit'], maxAgeMs: 3_600_000, duplicateWindowMs: 60_000 });
  const consumer = new BatchConsumer(
    nats,
    { deadLetterSubject: 'dlq.kit', ...spec, stream: name, durable: name, filterSubject: subject },
    handler,
    logger,
    new Metrics(`kit-${name}-test`),
  );
  await consumer.start();
  const stop = async () => {
    await consumer.stop();
    await nats.close();
    await cleanupRun(run);
  };
  return { nats, stop };
}

describe(`${BatchConsumer.name} with a key`, () => {
  const Keyed = z.object({ k: z.string(), n: z.number().int() });
  let nats: Nats;
  let stop: () => Promise<void>;
  const handled = new Map<string, number[]>();
  const inFlight = new Set<string>();
  const overlaps: string[] = [];

  beforeAll(async () => {
    ({ nats, stop } = await ownConsumer(
      'KEYED',
      'kit.keyed',
      { schema: Keyed, maxBatch: 4, concurrency: 4, key: (event) => event.k },
      async (items) => {
        const keys = new Set(items.map((i) => i.event.k));
        for (const k of keys) {
          if (inFlight.has(k)) overlaps.push(k);
          inFlight.add(k);
        }
        // Batches finish out of the order they started in.
        await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 15)));
        for (const { event } of items) handled.set(event.k, [...(handled.get(event.k) ?? []), event.n]);
        for (const k of keys) inFlight.delete(k);
        return items.map((): BatchVerdict => ({ ok: true }));
      },
    ));
  });

  afterAll(() => stop());

  it('hands the events of one key over in the order they arrived, one batch at a time, across workers', async () => {
    const js = jetstream(nats.connection);
    const publishes: Promise<unknown>[] = [];
    // Five keys, interleaved, so every batch holds a few and the four workers contend for them.
    for (let n = 0; n < 300; n++)
      publishes.push(js.publish(nats.subject('kit.keyed'), JSON.stringify({ k: `k${n % 5}`, n })));
    await Promise.all(publishes);
    await eventually(() => ([...handled.values()].flat().length === 300 ? true : undefined));
    expect(overlaps).toEqual([]);
    for (let k = 0; k < 5; k++) {
      const expected = Array.from({ length: 60 }, (_, i) => i * 5 + k);
      expect([`k${k}`, handled.get(`k${k}`)]).toEqual([`k${k}`, expected]);
    }
  });
});

describe(`${BatchConsumer.name} when a dead letter cannot be written`, () => {
  const Item = z.object({ n: z.number().int() });
  let nats: Nats;
  let stop: () => Promise<void>;
  const handled = new Map<number, number>();
  let inFlight = 0;
  let mostInFlight = 0;

  beforeAll(async () => {
    // No stream takes `dlq.nowhere`: every dead letter fails to publish.
    ({ nats, stop } = await ownConsumer(
      'BROKEN',
      'kit.broken',
      { schema: Item, deadLetterSubject: 'dlq.nowhere', maxBatch: 1, concurrency: 2, ackWaitMs: 1000 },
      async (items) => {
        inFlight += 1;
        mostInFlight = Math.max(mostInFlight, inFlight);
        await new Promise((r) => setTimeout(r, 25));
        for (const { event } of items) handled.set(event.n, (handled.get(event.n) ?? 0) + 1);
        inFlight -= 1;
        return items.map((): BatchVerdict => ({ ok: true }));
      },
    ));
  });

  afterAll(() => stop());

  it('keeps its workers (and no more) going, and keeps the event it could not dead-letter', async () => {
    const js = jetstream(nats.connection);
    await js.publish(nats.subject('kit.broken'), '{not json');
    for (let n = 0; n < 200; n++) await js.publish(nats.subject('kit.broken'), JSON.stringify({ n }));
    await eventually(() => (handled.size === 200 ? true : undefined), 30_000);
    expect([...handled.values()].every((times) => times === 1)).toBe(true);
    expect(mostInFlight).toBeLessThanOrEqual(2);
    // The poison is neither acked nor lost: it waits for a dead-letter stream to take it.
    const info = await jetstreamManager(nats.connection).then((jsm) =>
      jsm.consumers.info(nats.stream('BROKEN'), 'BROKEN'),
    );
    expect(info.num_ack_pending + info.num_pending).toBeGreaterThanOrEqual(1);
  });
});
