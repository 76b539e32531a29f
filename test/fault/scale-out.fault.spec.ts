import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { Durables, USAGE_STREAM, prefixedStream } from '@parley/contracts';
import { DATABASE_URL, NATS_URL, SERVICES, cleanupRun, runId } from '../support/stack';
import { gatewayUrls, killInstances, startFleet, stopFleet, type Fleet } from '../support/fleet';
import { callGateway } from '../support/http';
import { Load } from '../support/load';
import { openStream } from '../support/sse';

/** Requests a user may make a minute here: low, so the shared limit is reached quickly. */
const LIMIT = 60;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, probe: () => Promise<boolean> | boolean, timeoutMs: number): Promise<number> {
  const started = Date.now();
  while (!(await probe())) {
    if (Date.now() - started > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(100);
  }
  return Date.now() - started;
}

/**
 * Two instances of every service on one machine, each on its own HTTP ports, sharing the
 * schemas, the queue groups, the durable consumers and Redis (docs/operations.md, "Scale-out").
 */
describe('two instances of every service (fault)', () => {
  const id = runId('sco');
  const password = randomBytes(12).toString('base64url');
  let fleet: Fleet;
  let gateways: string[];
  let admin: string;
  let adminId: string;
  let bot: { id: string; api_key: string };
  let pg: Client;
  let nc: NatsConnection;

  const as = (token: string) => ({ authorization: `Bearer ${token}` });
  const status = async (base: string, path: string, headers: Record<string, string>) =>
    (await fetch(`${base}${path}`, { headers })).status;
  const newUser = async (name: string) => {
    const username = `${name}-${randomBytes(4).toString('hex')}`;
    const created = await callGateway(gateways[0], 'POST', '/api/v1/users', admin, {
      username,
      password: 'correct-horse-battery',
    });
    expect(created.status).toBe(201);
    const login = await callGateway(gateways[1], 'POST', '/api/v1/auth/login', undefined, {
      username,
      password: 'correct-horse-battery',
    });
    expect(login.status).toBe(200);
    return { id: created.body.id as string, token: login.body.access_token as string };
  };

  beforeAll(async () => {
    fleet = await startFleet(id, 2, {
      PARLEY_ADMIN_USERNAME: 'admin',
      PARLEY_ADMIN_PASSWORD: password,
      RATE_LIMIT_PER_MINUTE: String(LIMIT),
      // The load runs as a bot: its own limit stays out of the way.
      BOT_RATE_LIMIT_PER_MINUTE: '1000000',
    });
    gateways = gatewayUrls(fleet);
    const login = await callGateway(gateways[0], 'POST', '/api/v1/auth/login', undefined, {
      username: 'admin',
      password,
    });
    admin = login.body.access_token;
    adminId = (await callGateway(gateways[1], 'GET', '/api/v1/me', admin)).body.id;
    bot = (await callGateway(gateways[0], 'POST', '/api/v1/bots', admin, { name: 'scale-out' })).body;
    pg = new Client({ connectionString: DATABASE_URL });
    await pg.connect();
    nc = await connect({ servers: NATS_URL });
  }, 240_000);

  afterAll(async () => {
    await nc?.close();
    await pg?.end();
    if (fleet) await stopFleet(fleet);
    await cleanupRun(id);
  });

  it('streams to gateway A what is appended through gateway B', async () => {
    const session = await callGateway(gateways[0], 'POST', '/api/v1/sessions', admin, { title: 'live' });
    expect(session.status).toBe(201);
    const stream = openStream(`/api/v1/sessions/${session.body.id}/stream`, as(admin), gateways[0]);
    try {
      await stream.ready;
      expect(stream.status()).toBe(200);
      const appended = [];
      for (let i = 0; i < 4; i++) {
        // Through gateway B, so whichever message instance appends, it is gateway A that must hear it.
        const res = await callGateway(gateways[1], 'POST', `/api/v1/sessions/${session.body.id}/messages`, admin, {
          role: 'user',
          content: `across ${i}`,
        });
        expect(res.status).toBe(201);
        appended.push(res.body);
      }
      await until(
        'the stream on gateway A receives the appends made through gateway B',
        () => stream.events.length >= 4,
        10_000,
      );
      expect(stream.events.map((e) => [e.event, e.id, JSON.parse(e.data ?? '{}').content])).toEqual(
        appended.map((m) => ['message', String(m.seq), m.content]),
      );
    } finally {
      stream.close();
    }
  });

  it('limits a user once across both gateways (the count lives in Redis)', async () => {
    for (let round = 1; ; round++) {
      const user = await newUser('limited');
      // Windows are fixed minutes: begin early enough in one that the burst stays in it.
      await until('a fresh rate window', () => Date.now() % 60_000 < 50_000, 15_000);
      const window = Math.floor(Date.now() / 60_000);
      const answers: { gateway: number; status: number; retryAfter: string | null }[] = [];
      for (let i = 0; i < LIMIT * 1.5; i += 10) {
        answers.push(
          ...(await Promise.all(
            Array.from({ length: 10 }, async (_, j) => {
              const gateway = (i + j) % 2;
              const res = await fetch(`${gateways[gateway]}/api/v1/me`, { headers: as(user.token) });
              await res.arrayBuffer();
              return { gateway, status: res.status, retryAfter: res.headers.get('retry-after') };
            }),
          )),
        );
      }
      if (Math.floor(Date.now() / 60_000) !== window && round < 3) continue;
      // Half the requests went to each gateway: each alone would have let all of them through.
      expect(answers.filter((a) => a.status === 200)).toHaveLength(LIMIT);
      const limited = answers.filter((a) => a.status === 429);
      expect(limited).toHaveLength(LIMIT / 2);
      expect(new Set(limited.map((a) => a.gateway))).toEqual(new Set([0, 1]));
      for (const a of limited) expect(Number(a.retryAfter)).toBeGreaterThan(0);
      return;
    }
  });

  it('refuses a disabled user and a revoked bot key on both gateways', async () => {
    const user = await newUser('revoked');
    const other = (await callGateway(gateways[1], 'POST', '/api/v1/bots', admin, { name: 'revoked' })).body;
    const key = { 'x-api-key': other.api_key as string };
    // Both gateways have just accepted both credentials (and may hold what they learned).
    for (const g of gateways) {
      expect(await status(g, '/api/v1/me', as(user.token))).toBe(200);
      expect(await status(g, '/api/v1/me', key)).toBe(200);
    }
    expect(
      (await callGateway(gateways[1], 'PATCH', `/api/v1/users/${user.id}`, admin, { enabled: false })).status,
    ).toBe(200);
    expect(
      (await callGateway(gateways[0], 'DELETE', `/api/v1/bots/${other.id}/keys/${other.api_key_id}`, admin)).status,
    ).toBe(204);
    const refusedEverywhere = async () =>
      (
        await Promise.all(
          gateways.flatMap((g) => [status(g, '/api/v1/me', as(user.token)), status(g, '/api/v1/me', key)]),
        )
      ).every((s) => s === 401);
    const tookMs = await until('both credentials refused on both gateways', refusedEverywhere, 10_000);
    process.stdout.write(`scale-out: refused on both gateways ${tookMs} ms after the change\n`);
    // And they stay refused: no instance answers from what it knew before.
    for (let i = 0; i < 5; i++) expect(await refusedEverywhere()).toBe(true);
    expect(tookMs).toBeLessThan(10_000);
  });

  it('loses no acknowledged write and doubles none when one instance of each service is killed under load', async () => {
    const load = new Load(
      { gateways, botId: bot.id, botKey: bot.api_key, userId: adminId },
      { sessions: 4, writersPerSession: 2, usageWriters: 2, usageBatch: 20 },
      id,
    );
    try {
      await load.start();
      await load.progress(80);
      await killInstances(fleet, SERVICES, 0);
      // The survivors carry on: 80 more writes acknowledged after the kill.
      await load.progress(80);
    } finally {
      await load.stop();
    }
    process.stdout.write(`scale-out load: ${load.summary()}\n`);
    expect(load.unexpected).toEqual([]);
    expect(load.appends).toBeGreaterThan(0);
    expect(load.usage.events).toBeGreaterThan(0);

    expect(await load.checkMessages(gateways[1])).toEqual([]);
    const jsm = await jetstreamManager(nc);
    const drained = async () => {
      const info = await jsm.consumers.info(prefixedStream(id, USAGE_STREAM), Durables.usageRecords);
      return info.num_pending === 0 && info.num_ack_pending === 0;
    };
    expect(await load.checkUsage(pg, `${id}_usage`, drained)).toEqual([]);
  }, 300_000);
});
