import { Controller, Module, type INestApplication } from '@nestjs/common';
import { Payload } from '@nestjs/microservices';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { z } from 'zod';
import { rpc } from '@parley/contracts';
import {
  DLQ_STREAM_SPEC,
  DOMAIN_STREAM_SPEC,
  DomainEventHandler,
  Metrics,
  Nats,
  ParleyTransport,
  RpcClient,
  RpcHandler,
  createLogger,
  createServiceApp,
  ensureStream,
  startServing,
} from '../src';
import { NATS_URL, cleanupRun, runId } from '../../../test/support/stack';

/**
 * A rolling upgrade: instances of the previous and the next version serve the same subjects
 * (one queue group), while callers and publishers of both versions talk to them, and each
 * version's consumer takes the events of both (a durable of its own here, so each sees all). Version 2 adds an optional field to a request, a response and an
 * event. Both versions' schemas are strict objects: `rpc()` and the transport loosen them, so
 * an unknown field is dropped, never refused, and a missing optional one is simply absent.
 */
const logger = createLogger('upgrade-test', 'silent');
const id = runId('upg');

const GetV1 = rpc(
  'test.upgrade.get',
  z.strictObject({ id: z.string() }),
  z.strictObject({ id: z.string(), name: z.string(), by: z.string() }),
);
const GetV2 = rpc(
  'test.upgrade.get',
  z.strictObject({ id: z.string(), locale: z.string().optional() }),
  z.strictObject({ id: z.string(), name: z.string(), by: z.string(), title: z.string().optional() }),
);
const ChangedV1 = { subject: 'evt.upgrade.changed', schema: z.strictObject({ n: z.number().int() }) };
const ChangedV2 = {
  subject: 'evt.upgrade.changed',
  schema: z.strictObject({ n: z.number().int(), reason: z.string().optional() }),
};

describe('rolling upgrade: two versions side by side over real NATS', () => {
  let nats: Nats;
  let client: RpcClient;
  const apps: INestApplication[] = [];
  const requests: { version: number; request: unknown }[] = [];
  const events: { version: number; event: unknown }[] = [];

  function instance(version: 1 | 2) {
    @Controller()
    class V1Handlers {
      @RpcHandler(GetV1)
      get(request: z.infer<typeof GetV1.request>) {
        requests.push({ version, request });
        return { id: request.id, name: 'widget', by: 'v1' };
      }

      @DomainEventHandler(ChangedV1, { durable: 'upgrade-changed-v1' })
      changed(@Payload() event: z.infer<typeof ChangedV1.schema>) {
        events.push({ version, event });
      }
    }
    @Controller()
    class V2Handlers {
      @RpcHandler(GetV2)
      get(request: z.infer<typeof GetV2.request>) {
        requests.push({ version, request });
        return { id: request.id, name: 'widget', by: 'v2', title: request.locale === 'fr' ? 'Machin' : 'Widget' };
      }

      @DomainEventHandler(ChangedV2, { durable: 'upgrade-changed-v2' })
      changed(@Payload() event: z.infer<typeof ChangedV2.schema>) {
        events.push({ version, event });
      }
    }
    @Module({
      controllers: [version === 1 ? V1Handlers : V2Handlers],
      providers: [
        {
          provide: ParleyTransport,
          useFactory: () => new ParleyTransport(nats, { queue: 'upgrade-test' }, logger, new Metrics('upgrade-test')),
        },
      ],
    })
    class InstanceModule {}
    return InstanceModule;
  }

  beforeAll(async () => {
    nats = await Nats.connect({ url: NATS_URL, prefix: id, name: 'upgrade-test', logger });
    await ensureStream(nats, DOMAIN_STREAM_SPEC);
    await ensureStream(nats, DLQ_STREAM_SPEC);
    for (const version of [1, 2] as const) {
      const app = await createServiceApp(instance(version), { logger: false });
      await startServing(app);
      apps.push(app);
    }
    client = new RpcClient(nats, 2000, new Metrics('upgrade-client'));
  });

  afterAll(async () => {
    for (const app of apps) await app.close();
    await nats.close();
    await cleanupRun(id);
  });

  it('answers callers of both versions from instances of both versions', async () => {
    const fromV2 = await Promise.all(
      Array.from({ length: 30 }, (_, i) => client.call(GetV2, { id: `n${i}`, locale: 'fr' })),
    );
    const fromV1 = await Promise.all(Array.from({ length: 30 }, (_, i) => client.call(GetV1, { id: `o${i}` })));
    // Both instances answered both kinds of caller (one queue group).
    expect(new Set(requests.map((r) => r.version))).toEqual(new Set([1, 2]));
    expect(new Set(fromV2.map((a) => a.by))).toEqual(new Set(['v1', 'v2']));
    expect(new Set(fromV1.map((a) => a.by))).toEqual(new Set(['v1', 'v2']));
    // A newer caller's `locale` reached the old instance and was dropped there, not refused.
    expect(
      requests.filter((r) => r.version === 1 && String((r.request as { id: string }).id).startsWith('n')),
    ).not.toEqual([]);
    for (const r of requests.filter((x) => x.version === 1)) expect(r.request).not.toHaveProperty('locale');
    // An older caller's request without `locale` is what the new instance takes as "none".
    for (const r of requests.filter(
      (x) => x.version === 2 && String((x.request as { id: string }).id).startsWith('o'),
    )) {
      expect(r.request).toEqual({ id: (r.request as { id: string }).id });
    }
    // An old caller drops the new `title`; a new caller reads it when the new instance answered.
    for (const a of fromV1) expect(a).not.toHaveProperty('title');
    for (const a of fromV2) expect(a.by === 'v2' ? a.title : undefined).toBe(a.by === 'v2' ? 'Machin' : undefined);
  });

  it('applies events of both versions in instances of both versions, and dead-letters none', async () => {
    const js = jetstream(nats.connection);
    for (let n = 0; n < 40; n += 1) {
      // A publisher of version 2 adds `reason` (and one from a later version still something else).
      const event = n % 2 === 0 ? { n } : { n, reason: 'edited', added_later: { deep: true } };
      await js.publish(nats.subject(ChangedV1.subject), JSON.stringify(event));
    }
    const deadline = Date.now() + 15_000;
    while (events.length < 80 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    for (const version of [1, 2]) {
      const applied = events.filter((e) => e.version === version).map((e) => (e.event as { n: number }).n);
      expect(applied.sort((a, b) => a - b)).toEqual(Array.from({ length: 40 }, (_, n) => n));
    }
    for (const e of events) {
      expect(e.event).not.toHaveProperty('added_later');
      if (e.version === 1) expect(e.event).not.toHaveProperty('reason');
    }
    const jsm = await jetstreamManager(nats.connection);
    const dlq = await jsm.streams.info(nats.stream(DLQ_STREAM_SPEC.name));
    expect(dlq.state.messages).toBe(0);
  });
});
