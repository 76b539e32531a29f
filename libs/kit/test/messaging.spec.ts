import { Controller, Module, type INestApplication } from '@nestjs/common';
import { Ctx, Payload } from '@nestjs/microservices';
import { connect as connectTcp } from 'node:net';
import { MikroORM } from '@mikro-orm/postgresql';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { headers as natsHeaders } from '@nats-io/transport-node';
import { z } from 'zod';
import { DLQ_DOMAIN, DOMAIN_STREAM, ParleyError, rpc, type DeadLetter } from '@parley/contracts';
import {
  ConfigError,
  DLQ_STREAM_SPEC,
  DOMAIN_STREAM_SPEC,
  DurableConsumer,
  Metrics,
  Nats,
  DomainEventHandler,
  NatsContext,
  ParleyTransport,
  RpcClient,
  RpcHandler,
  createServiceApp,
  startServing,
  createLogger,
  ensureStream,
} from '../src';
import { OutboxEntry, OutboxRelay, addToOutbox, coalesceInOutbox, createOrm } from '../src/database';
import { DATABASE_URL, NATS_URL, cleanupRun, runId } from '../../../test/support/stack';

const logger = createLogger('kit-test', 'silent');
const id = runId('kit');
const schema = `${id}_kit`;

const Echo = rpc('test.echo', z.object({ text: z.string().min(1) }), z.object({ text: z.string(), by: z.string() }));
const Fail = rpc('test.fail', z.object({ kind: z.enum(['not_found', 'crash', 'slow']) }), z.object({}));
const Nobody = rpc('test.nobody', z.object({}), z.object({}));
const Big = rpc('test.big', z.object({ bytes: z.number().int() }), z.object({ text: z.string() }));

const TestEvent = { subject: 'evt.kit.happened', schema: z.object({ n: z.number().int(), note: z.string() }) };
const TransportedEvent = { subject: 'evt.kit.transported', schema: TestEvent.schema };

async function eventually<T>(probe: () => T | undefined | Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Sends one HPUB frame as raw protocol (nats.js will not write a malformed header) and returns what comes back. */
async function rawRequest(subject: string, headerBlock: string, body: string): Promise<string> {
  const url = new URL(NATS_URL);
  const socket = connectTcp({ host: url.hostname, port: Number(url.port || 4222) });
  let seen = '';
  socket.on('data', (chunk) => (seen += chunk.toString('latin1')));
  await new Promise((r) => socket.once('connect', r));
  const inbox = `_INBOX.raw${Date.now()}`;
  const size = Buffer.byteLength(headerBlock);
  const total = size + Buffer.byteLength(body);
  socket.write(`CONNECT {"verbose":false,"headers":true,"no_responders":true}\r\nSUB ${inbox} 1\r\n`);
  socket.write(`HPUB ${subject} ${inbox} ${size} ${total}\r\n${headerBlock}${body}\r\n`);
  const deadline = Date.now() + 3000;
  while (!seen.includes(`MSG ${inbox}`) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  socket.destroy();
  return seen;
}

describe('messaging kit against real NATS and Postgres', () => {
  let nats: Nats;
  let metrics: Metrics;
  let orm: MikroORM;

  beforeAll(async () => {
    nats = await Nats.connect({ url: NATS_URL, prefix: id, name: 'kit-test', logger });
    metrics = new Metrics('kit-test');
    orm = await createOrm({ url: DATABASE_URL, schema, entities: [OutboxEntry], migrations: [] });
    await orm.em.execute(`create schema if not exists "${schema}"`);
    await orm.schema.create();
    await ensureStream(nats, DOMAIN_STREAM_SPEC);
    await ensureStream(nats, DLQ_STREAM_SPEC);
  });

  afterAll(async () => {
    await nats.close();
    await orm.close();
    await cleanupRun(id);
  });

  describe(ParleyTransport.name, () => {
    let client: RpcClient;
    const apps: INestApplication[] = [];
    const stored: { n: number; deliveries: number }[] = [];
    let throwsLeft = 1;

    /** A small hybrid application serving the test contracts through the transport, as instance `name`. */
    function testModule(name: string) {
      @Controller()
      class TestHandlers {
        @RpcHandler(Echo)
        echo({ text }: { text: string }) {
          return { text, by: name };
        }

        @RpcHandler(Fail)
        async fail({ kind }: { kind: string }) {
          if (kind === 'not_found') throw new ParleyError('NOT_FOUND', 'no such thing');
          if (kind === 'slow') await new Promise((r) => setTimeout(r, 1500));
          throw new Error('boom');
        }

        @RpcHandler(Big)
        big({ bytes }: { bytes: number }) {
          return { text: 'x'.repeat(bytes) };
        }

        @DomainEventHandler(TransportedEvent, { durable: 'kit-transport' })
        async happened(@Payload() event: { n: number }, @Ctx() ctx: NatsContext) {
          if (throwsLeft > 0) {
            throwsLeft -= 1;
            throw new Error('fails once');
          }
          if (!stored.some((s) => s.n === event.n))
            stored.push({ n: event.n, deliveries: ctx.delivery!.deliveryCount });
        }
      }
      @Module({
        controllers: [TestHandlers],
        providers: [
          {
            provide: ParleyTransport,
            useFactory: () => new ParleyTransport(nats, { queue: 'kit-test' }, logger, metrics),
          },
        ],
      })
      class TestModule {}
      return TestModule;
    }

    beforeAll(async () => {
      for (const name of ['a', 'b']) {
        const app = await createServiceApp(testModule(name), { logger: false });
        await startServing(app);
        apps.push(app);
      }
      client = new RpcClient(nats, 500, metrics);
    });

    afterAll(async () => {
      for (const app of apps) await app.close();
    });

    it('answers a request and shares the load across a queue group', async () => {
      const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => client.call(Echo, { text: `t${i}` })));
      expect(answers.map((a) => a.text)).toEqual(Array.from({ length: 40 }, (_, i) => `t${i}`));
      const by = new Set(answers.map((a) => a.by));
      expect(by).toEqual(new Set(['a', 'b']));
    });

    it('checks the request against the contract at the handler, and strips unknown fields', async () => {
      await expect(client.call(Echo, { text: '' })).rejects.toMatchObject({
        code: 'VALIDATION_FAILED',
        status: 400,
        errors: [{ field: 'text', message: expect.any(String) }],
      });
      const loose = { text: 'hi', added_in_a_later_version: true } as { text: string };
      await expect(client.call(Echo, loose)).resolves.toMatchObject({ text: 'hi' });
    });

    it('carries typed errors across, and hides unexpected ones as INTERNAL', async () => {
      await expect(client.call(Fail, { kind: 'not_found' })).rejects.toMatchObject({
        code: 'NOT_FOUND',
        status: 404,
        retryable: false,
      });
      await expect(client.call(Fail, { kind: 'crash' })).rejects.toMatchObject({
        code: 'INTERNAL',
        status: 500,
        detail: 'internal error',
      });
    });

    it('times out, and tells a missing service apart', async () => {
      await expect(client.call(Fail, { kind: 'slow' })).rejects.toMatchObject({
        code: 'UPSTREAM_TIMEOUT',
        retryable: true,
      });
      await expect(client.call(Nobody, {})).rejects.toMatchObject({ code: 'UPSTREAM_UNAVAILABLE', retryable: true });
    });

    it('answers a payload that is not JSON with BAD_REQUEST, skips a malformed header line, and keeps serving', async () => {
      const reply = await nats.connection.request(nats.subject(Echo.subject), '{nope', { timeout: 2000 });
      expect(reply.headers?.get('Parley-Error')).toBe('BAD_REQUEST');
      const answer = await rawRequest(
        nats.subject(Echo.subject),
        'NATS/1.0\r\nbad key: 1\r\nX-Fine: yes\r\n\r\n',
        '{"text":"x"}',
      );
      expect(answer).toContain('"text":"x"');
      const deep = await nats.connection.request(
        nats.subject(Echo.subject),
        `${'['.repeat(20000)}${']'.repeat(20000)}`,
        {
          timeout: 2000,
        },
      );
      expect(deep.headers?.get('Parley-Error')).toMatch(/^(BAD_REQUEST|VALIDATION_FAILED)$/);
      await expect(client.call(Echo, { text: 'still here' })).resolves.toMatchObject({ text: 'still here' });
    });

    it("delivers a reply larger than the server's max payload in chunks", async () => {
      const max = nats.connection.info!.max_payload;
      const answer = await client.call(Big, { bytes: max * 2 + 123 });
      expect(answer.text.length).toBe(max * 2 + 123);
    });

    it('gives an event whose handler threw once to the handler again, and it is stored once', async () => {
      const js = jetstream(nats.connection);
      await js.publish(nats.subject(TransportedEvent.subject), JSON.stringify({ n: 7, note: 'once' }));
      await eventually(() => (stored.length === 1 ? true : undefined));
      await new Promise((r) => setTimeout(r, 1500));
      expect(stored).toEqual([{ n: 7, deliveries: 2 }]);
      expect(throwsLeft).toBe(0);
    });
  });

  describe(OutboxRelay.name, () => {
    it('relays committed events once, with the row id as Nats-Msg-Id, and drops a re-publish', async () => {
      const em = orm.em.fork();
      await em.transactional(async (tx) => {
        addToOutbox(tx, TestEvent, { n: 1, note: 'first' });
        addToOutbox(tx, TestEvent, { n: 2, note: 'second' });
      });
      await expect(
        orm.em.fork().transactional(async (tx) => {
          addToOutbox(tx, TestEvent, { n: 3, note: 'rolled back' });
          throw new Error('abort');
        }),
      ).rejects.toThrow('abort');

      const relay = new OutboxRelay(orm, nats, logger, metrics, { pollMs: 50 });
      expect(await relay.backlog()).toBe(2);
      const written = await orm.em
        .fork()
        .execute<{ id: string }[]>('select id, subject, payload, headers, created_at from outbox order by id');
      expect(await relay.relayBatch()).toBe(2);
      expect(await relay.backlog()).toBe(0);
      // Relayed rows are deleted in the transaction that published them.
      expect(await orm.em.fork().execute('select id from outbox')).toEqual([]);

      // A crash between publish and commit leaves the rows to publish again: the stream's
      // duplicate window drops them.
      for (const row of written) {
        await orm.em
          .fork()
          .execute(
            'insert into outbox (id, subject, payload, headers, created_at) select r.id, r.subject, r.payload, r.headers, r.created_at from jsonb_populate_record(null::outbox, ?::jsonb) r',
            [JSON.stringify(row)],
          );
      }
      expect(await relay.relayBatch()).toBe(2);

      const jsm = await jetstreamManager(nats.connection);
      const info = await jsm.streams.info(nats.stream(DOMAIN_STREAM), {
        subjects_filter: nats.subject(TestEvent.subject),
      });
      const last = await jsm.streams.getMessage(nats.stream(DOMAIN_STREAM), {
        last_by_subj: nats.subject(TestEvent.subject),
      });
      if (!last) throw new Error('no event in the stream');
      expect(last.json()).toEqual({ n: 2, note: 'second' });
      expect(last.header.get('Nats-Msg-Id')).toBe(written[1].id);
      expect(info.state.subjects?.[nats.subject(TestEvent.subject)]).toBe(2);
      await relay.stop();
    });

    it('relays a coalesced key once per delay, with its newest payload', async () => {
      const relay = new OutboxRelay(orm, nats, logger, metrics, { pollMs: 60_000, coalescedDelayMs: 400 });
      const jsm = await jetstreamManager(nats.connection);
      const count = async () =>
        (await jsm.streams.info(nats.stream(DOMAIN_STREAM), { subjects_filter: nats.subject(TestEvent.subject) })).state
          .subjects?.[nats.subject(TestEvent.subject)] ?? 0;
      const before = await count();
      for (const n of [10, 11, 12]) {
        await orm.em.fork().transactional((tx) => coalesceInOutbox(tx, TestEvent, { n, note: 'a' }, 'key-a'));
      }
      await orm.em.fork().transactional((tx) => coalesceInOutbox(tx, TestEvent, { n: 20, note: 'b' }, 'key-b'));
      // Plain events go at once; coalesced ones wait for their delay.
      expect(await relay.relayBatch()).toBe(0);
      expect(await relay.backlog()).toBe(2);
      await new Promise((r) => setTimeout(r, 500));
      expect(await relay.relayBatch()).toBe(2);
      expect(await count()).toBe(before + 2);
      const published: number[] = [];
      for (let seq = (await jsm.streams.info(nats.stream(DOMAIN_STREAM))).state.last_seq; published.length < 2; seq--) {
        const m = await jsm.streams.getMessage(nats.stream(DOMAIN_STREAM), { seq });
        if (m?.subject === nats.subject(TestEvent.subject)) published.push(m.json<{ n: number }>().n);
      }
      expect(published.sort()).toEqual([12, 20]);
      // The key is free again: the next write waits its own delay.
      await orm.em.fork().transactional((tx) => coalesceInOutbox(tx, TestEvent, { n: 13, note: 'a' }, 'key-a'));
      expect(await relay.relayBatch()).toBe(0);
      expect(await relay.backlog()).toBe(1);
      await orm.em.fork().execute('delete from outbox');
      await relay.stop();
    });
  });

  describe(DurableConsumer.name, () => {
    it('acks handled events, redelivers failures, and dead-letters what can never succeed', async () => {
      const js = jetstream(nats.connection);
      const subject = nats.subject('evt.kit.consumed');
      const seen: { n: number; deliveries: number }[] = [];
      let flaky = 0;
      const consumer = new DurableConsumer(
        nats,
        {
          stream: DOMAIN_STREAM,
          durable: 'kit-test',
          filterSubject: 'evt.kit.consumed',
          schema: TestEvent.schema,
          deadLetterSubject: DLQ_DOMAIN,
          maxDeliver: 3,
          backoffMs: [100],
        },
        async (event, meta) => {
          if (event.note === 'flaky' && ++flaky < 3) throw new Error('not yet');
          if (event.note === 'always') throw new Error('never works');
          if (event.note === 'rejected') throw new ParleyError('VALIDATION_FAILED', 'names an unknown thing');
          seen.push({ n: event.n, deliveries: meta.deliveryCount });
        },
        logger,
        metrics,
      );
      await consumer.start();

      await js.publish(subject, JSON.stringify({ n: 1, note: 'ok' }));
      await js.publish(subject, '{not json');
      await js.publish(subject, JSON.stringify({ n: 'two', note: 'bad schema' }));
      await js.publish(subject, JSON.stringify({ n: 3, note: 'flaky' }));
      await js.publish(subject, JSON.stringify({ n: 4, note: 'always' }));
      await js.publish(subject, JSON.stringify({ n: 5, note: 'rejected' }));
      await js.publish(subject, JSON.stringify({ n: 6, note: 'ok' }), { headers: natsHeaders() });

      await eventually(() => (seen.length === 3 ? true : undefined));
      expect(seen).toHaveLength(3);
      expect(seen).toEqual(
        expect.arrayContaining([
          { n: 1, deliveries: 1 },
          { n: 6, deliveries: 1 },
          { n: 3, deliveries: 3 },
        ]),
      );

      const jsm = await jetstreamManager(nats.connection);
      const letters = await eventually(async () => {
        const info = await jsm.streams.info(nats.stream('DLQ'));
        if (info.state.messages < 4) return undefined;
        const out: DeadLetter[] = [];
        for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
          const letter = await jsm.streams.getMessage(nats.stream('DLQ'), { seq });
          if (letter) out.push(letter.json<DeadLetter>());
        }
        return out;
      });
      const reasons = letters.map((l) => l.reason);
      expect(reasons).toEqual(
        expect.arrayContaining([
          'payload is not JSON',
          expect.stringMatching(/^invalid event: n: /),
          expect.stringMatching(/^failed after 3 deliveries: never works/),
          'VALIDATION_FAILED: names an unknown thing',
        ]),
      );
      expect(letters.every((l) => l.subject === 'evt.kit.consumed')).toBe(true);
      expect(letters.find((l) => l.reason.startsWith('invalid event'))?.event).toEqual({
        n: 'two',
        note: 'bad schema',
      });
      const text = await metrics.registry.getSingleMetricAsString('parley_dead_letters_total');
      const counted = [...text.matchAll(/parley_dead_letters_total\{([^}]*)\} (\d+)/g)]
        .filter(([, labels]) => labels.includes('subject="dlq.domain"'))
        .map(([, labels, n]) => [/code="(\w+)"/.exec(labels)?.[1], Number(n)]);
      expect(Object.fromEntries(counted)).toEqual({ NOT_JSON: 1, INVALID_EVENT: 1, UNDELIVERABLE: 1, REJECTED: 1 });
      await consumer.stop();
    });
  });

  describe(ensureStream.name, () => {
    it('refuses more than one replica on a server outside a cluster, naming JETSTREAM_REPLICAS, and creates nothing', async () => {
      const replicated = await Nats.connect({
        url: NATS_URL,
        prefix: id,
        name: 'kit-test-r3',
        logger,
        streamReplicas: 3,
      });
      try {
        const spec = { name: 'R3', subjects: ['kit.r3'], maxAgeMs: 60_000, duplicateWindowMs: 60_000 };
        const refused = await ensureStream(replicated, spec).catch((error: unknown) => error);
        expect(refused).toBeInstanceOf(ConfigError);
        expect((refused as ConfigError).message).toMatch(
          /JETSTREAM_REPLICAS=3: the NATS server \S+ is not part of a cluster.*set JETSTREAM_REPLICAS=1/,
        );
        // The same refusal for the stream that exists already (a single 2.9 server would accept the update).
        expect(await ensureStream(replicated, DOMAIN_STREAM_SPEC).catch((error: unknown) => error)).toBeInstanceOf(
          ConfigError,
        );
        const jsm = await jetstreamManager(nats.connection);
        const names: string[] = [];
        for await (const name of jsm.streams.names()) names.push(name);
        expect(names).not.toContain(nats.stream('R3'));
        expect((await jsm.streams.info(nats.stream(DOMAIN_STREAM))).config.num_replicas).toBe(1);
      } finally {
        await replicated.close();
      }
    });
  });
});
