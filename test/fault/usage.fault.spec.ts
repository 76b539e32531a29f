import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Client } from 'pg';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import {
  DATABASE_URL,
  NATS_URL,
  ROOT,
  cleanupRun,
  runId,
  startService,
  startStack,
  stopService,
  stopStack,
  waitReady,
  type Stack,
} from '../support/stack';

const EVENTS = 100_000;
const REPEATS = 2_000;

/**
 * Exactly once in effect under a crash: 100k usage events (and 2k repeats of some of them
 * under other Nats-Msg-Ids) are published while the usage service is killed with SIGKILL
 * mid-way and started again. Afterwards the table holds exactly 100k records with the exact
 * token totals, and the rollup and daily counters agree with it.
 */
describe('usage ingestion under a crash (fault)', () => {
  const id = runId('ufl');
  const password = randomBytes(12).toString('base64url');
  let stack: Stack;
  let nc: NatsConnection;
  let pg: Client;
  let botId: string;

  const one = async <T>(sql: string, params: unknown[] = []): Promise<T> => (await pg.query(sql, params)).rows[0] as T;
  const recorded = async () =>
    (await one<{ n: number }>(`select count(*)::int as n from "${id}_usage".usage_records where bot_id = $1`, [botId]))
      .n;

  beforeAll(async () => {
    stack = await startStack(id, {
      PARLEY_ADMIN_USERNAME: 'admin',
      PARLEY_ADMIN_PASSWORD: password,
      LOG_LEVEL: 'warn',
    });
    const gateway = `http://127.0.0.1:${stack.services.get('gateway')?.port}`;
    const login = await fetch(`${gateway}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'admin', password }),
    });
    const { access_token } = (await login.json()) as { access_token: string };
    const bot = await fetch(`${gateway}/api/v1/bots`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${access_token}` },
      body: JSON.stringify({ name: 'crash-test' }),
    });
    botId = ((await bot.json()) as { id: string }).id;
    nc = await connect({ servers: NATS_URL });
    pg = new Client({ connectionString: DATABASE_URL });
    await pg.connect();
  }, 120_000);

  afterAll(async () => {
    await nc?.close();
    await pg?.end();
    if (stack) await stopStack(stack);
    await cleanupRun(id);
  });

  it('records 100k events exactly once across a SIGKILL of the usage service', async () => {
    const js = jetstream(nc);
    const subject = `${id}.usage.events.${botId}`;
    const startedAt = new Date(Date.now() - 90 * 60 * 1000);
    const eventOf = (i: number) => ({
      request_id: `crash-${i}`,
      bot_id: botId,
      status: 'completed',
      provider: 'acme',
      model: i % 2 ? 'big' : 'small',
      input_tokens: i % 1000,
      output_tokens: i % 97,
      started_at: new Date(startedAt.getTime() + (i % 3_600) * 1000).toISOString(),
    });
    let expectedInput = 0;
    let expectedOutput = 0;
    for (let i = 0; i < EVENTS; i++) {
      expectedInput += i % 1000;
      expectedOutput += i % 97;
    }

    let killed = false;
    const publishing = (async () => {
      for (let from = 0; from < EVENTS; from += 1000) {
        const acks = [];
        for (let i = from; i < from + 1000; i++) {
          acks.push(js.publish(subject, JSON.stringify(eventOf(i)), { msgID: `${botId}:crash-${i}:completed` }));
          // Some events arrive twice, past the stream's duplicate window: the table drops them.
          if (i % (EVENTS / REPEATS) === 0) {
            acks.push(js.publish(subject, JSON.stringify(eventOf(i)), { msgID: `repeat-${i}` }));
          }
        }
        await Promise.all(acks);
      }
    })();

    const usage = stack.services.get('usage');
    if (!usage) throw new Error('no usage service');
    for (const deadline = Date.now() + 120_000; Date.now() < deadline;) {
      const n = await recorded();
      if (n >= 20_000) {
        await stopService(usage, 'SIGKILL');
        killed = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(killed).toBe(true);
    const atKill = await recorded();
    expect(atKill).toBeLessThan(EVENTS);
    await new Promise((r) => setTimeout(r, 1000));
    const restarted = startService('usage', stack.env, join(ROOT, '.parley', 'test-logs', id));
    stack.services.set('usage', restarted);
    await waitReady(restarted);
    await publishing;

    const jsm = await jetstreamManager(nc);
    for (const deadline = Date.now() + 240_000; Date.now() < deadline;) {
      const info = await jsm.consumers.info(`${id}_USAGE`, 'usage-records');
      if (info.num_pending === 0 && info.num_ack_pending === 0) break;
      await new Promise((r) => setTimeout(r, 250));
    }

    const totals = await one<{ n: number; input: string; output: string; total: string }>(
      `select count(*)::int as n, sum(input_tokens)::text as input, sum(output_tokens)::text as output,
              sum(total_tokens)::text as total from "${id}_usage".usage_records where bot_id = $1`,
      [botId],
    );
    expect(totals).toEqual({
      n: EVENTS,
      input: String(expectedInput),
      output: String(expectedOutput),
      total: String(expectedInput + expectedOutput),
    });
    const rollup = await one<{ n: string; total: string }>(
      `select sum(requests)::text as n, sum(total_tokens)::text as total from "${id}_usage".usage_hourly where bot_id = $1`,
      [botId],
    );
    expect(rollup).toEqual({ n: String(EVENTS), total: String(expectedInput + expectedOutput) });
    const daily = await one<{ n: string; total: string }>(
      `select sum(requests)::text as n, sum(total_tokens)::text as total from "${id}_usage".usage_daily where bot_id = $1`,
      [botId],
    );
    expect(daily).toEqual({ n: String(EVENTS), total: String(expectedInput + expectedOutput) });
    const metrics = await (await fetch(`http://127.0.0.1:${restarted.port}/metrics`)).text();
    expect(metrics).not.toMatch(/parley_dead_letters_total\{[^}]*subject="dlq.usage"/);
  }, 420_000);
});
