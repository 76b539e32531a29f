import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { ROOT, SERVICES, runId, startStack, stopStack, type ServiceName, type Stack } from '../support/stack';
import { startOwnNats, startOwnPostgres, startOwnRedisServer, type OwnInfrastructure } from '../support/infra';

/**
 * The stack on a NATS, Redis and PostgreSQL of the suite's own, under steady load (four
 * writers appending with client_message_id, a bot posting usage batches, both retrying until
 * acknowledged). Each dependency in turn is killed with SIGKILL and started again on the same
 * port and data. Nothing acknowledged may be lost or doubled; while NATS or PostgreSQL is away
 * every request answers 503 UPSTREAM_UNAVAILABLE (retryable) at once; while Redis is away
 * requests keep succeeding; each service is ready again without a restart of its own.
 */

/** How long a dependency stays away, from its kill to its restart (at least until every service noticed). */
const OUTAGE_MS = 4000;
/** No answer may take longer, outage or not (the request timeout is 5 s). */
const ANSWER_BOUND_MS = 2500;
const RECOVERY_BOUND_MS = 30_000;
const WRITERS = 4;
const EVENTS_PER_BATCH = 10;

/** The load's requests, and the test's own (set-up, checks), which are not counted as load. */
type Kind = 'append' | 'usage' | 'check';

interface Answer {
  kind: Kind;
  /** When the request was sent and when its answer had arrived (ms since the epoch). */
  sent: number;
  done: number;
  status: number;
  code?: string;
  retryable?: boolean;
  body?: any;
}

interface Outage {
  dependency: OwnInfrastructure['name'];
  killed: number;
  /** Every service's /readyz showed the outage. */
  noticed: number;
  /** The restarted dependency answered. */
  back: number;
  /** Every service's /readyz answered 200 (and no longer degraded). */
  ready: number;
  /** The first append sent after `back` that succeeded, answered. */
  firstAppend: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

describe('NATS, Redis and PostgreSQL killed under load (fault)', () => {
  const id = runId('inf');
  const password = randomBytes(12).toString('base64url');
  let nats: OwnInfrastructure | undefined;
  let redis: OwnInfrastructure | undefined;
  let postgres: OwnInfrastructure | undefined;
  let stack: Stack | undefined;
  let gateway = '';
  let token = '';
  let apiKey = '';
  let botId = '';
  const sessions: string[] = [];

  const answers: Answer[] = [];
  /** Per session: client_message_id → seq, for every acknowledged append. */
  const acked = new Map<string, Map<string, number>>();
  const accepted = { events: 0, input: 0, output: 0 };
  let stopping = false;
  /** Set when the suite ends: no retry goes on after it (a failed run may leave one unacknowledged). */
  let halted = false;
  let load: Promise<void> | undefined;
  const outages: Outage[] = [];

  const servicePort = (name: ServiceName) => stack?.services.get(name)?.port ?? 0;

  async function send(
    kind: Kind,
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = { authorization: `Bearer ${token}` },
  ): Promise<Answer> {
    const sent = Date.now();
    let answer: Answer;
    try {
      const res = await fetch(`${gateway}${path}`, {
        method,
        headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(20_000),
      });
      const text = await res.text();
      const parsed = text ? JSON.parse(text) : undefined;
      answer = {
        kind,
        sent,
        done: Date.now(),
        status: res.status,
        code: parsed?.code,
        retryable: parsed?.retryable,
        body: parsed,
      };
    } catch (error) {
      answer = { kind, sent, done: Date.now(), status: 0, code: String(error) };
    }
    if (kind !== 'check') answers.push({ ...answer, body: undefined });
    return answer;
  }

  async function writer(w: number, sessionId: string): Promise<void> {
    const mine = new Map<string, number>();
    acked.set(sessionId, mine);
    for (let k = 1; !stopping; k++) {
      const clientMessageId = `w${w}-${k}`;
      for (;;) {
        const a = await send('append', 'POST', `/api/v1/sessions/${sessionId}/messages`, {
          role: 'user',
          content: `message ${k} of writer ${w}`,
          client_message_id: clientMessageId,
        });
        if (a.status === 200 || a.status === 201) {
          mine.set(clientMessageId, a.body.seq);
          break;
        }
        if (halted) return;
        await sleep(100);
      }
      await sleep(30);
    }
  }

  async function bot(): Promise<void> {
    for (let k = 1; !stopping; k++) {
      const startedAt = new Date(Date.now() - 1000).toISOString();
      const events = Array.from({ length: EVENTS_PER_BATCH }, (_, j) => ({
        request_id: `b${k}-${j}`,
        bot_id: botId,
        status: 'completed',
        provider: 'acme',
        model: 'steady',
        input_tokens: k + j,
        output_tokens: j,
        started_at: startedAt,
      }));
      for (;;) {
        // The same request ids every time: a batch stored before its answer was lost counts once.
        const a = await send('usage', 'POST', '/api/v1/usage/events', { events }, { 'x-api-key': apiKey });
        if (a.status === 202) {
          accepted.events += events.length;
          accepted.input += events.reduce((n, e) => n + e.input_tokens, 0);
          accepted.output += events.reduce((n, e) => n + e.output_tokens, 0);
          break;
        }
        if (halted) return;
        await sleep(100);
      }
      await sleep(100);
    }
  }

  async function readiness(): Promise<Map<ServiceName, { status: number; body: any }>> {
    const seen = new Map<ServiceName, { status: number; body: any }>();
    await Promise.all(
      SERVICES.map(async (name) => {
        try {
          const res = await fetch(`http://127.0.0.1:${servicePort(name)}/readyz`, {
            signal: AbortSignal.timeout(5000),
          });
          seen.set(name, { status: res.status, body: await res.json() });
        } catch (error) {
          seen.set(name, { status: 0, body: String(error) });
        }
      }),
    );
    return seen;
  }

  async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = await probe();
      if (value !== undefined) return value;
      if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
      await sleep(100);
    }
  }

  /** Which services name the dependency as away on /readyz, and how. */
  function showsOutage(
    dependency: Outage['dependency'],
    seen: Map<ServiceName, { status: number; body: any }>,
  ): boolean {
    return SERVICES.every((name) => {
      const r = seen.get(name);
      const check = r?.body?.checks?.[dependency];
      if (dependency === 'redis') return r?.status === 200 && r.body.status === 'degraded' && check?.ok === false;
      // The gateway has no database: it stays ready while PostgreSQL is away.
      if (dependency === 'postgres' && name === 'gateway') return r?.status === 200 && check === undefined;
      return r?.status === 503 && r.body.status === 'not_ready' && check?.ok === false;
    });
  }

  const allReady = (seen: Map<ServiceName, { status: number; body: any }>) =>
    SERVICES.every((name) => seen.get(name)?.status === 200 && seen.get(name)?.body?.status === 'ready');

  async function outage(dependency: OwnInfrastructure, beforeKill?: () => Promise<void>): Promise<Outage> {
    await beforeKill?.();
    const killed = Date.now();
    await dependency.kill();
    const noticed = await until(
      `every service's /readyz names ${dependency.name}`,
      async () => (showsOutage(dependency.name, await readiness()) ? Date.now() : undefined),
      10_000,
    );
    await sleep(Math.max(0, killed + OUTAGE_MS - Date.now()));
    await dependency.restart();
    const back = Date.now();
    const ready = await until(
      `every service ready after ${dependency.name} came back`,
      async () => (allReady(await readiness()) ? Date.now() : undefined),
      RECOVERY_BOUND_MS,
    );
    const firstAppend = await until(
      `an append succeeding after ${dependency.name} came back`,
      async () => {
        const first = answers.find((a) => a.kind === 'append' && a.sent >= back && a.status < 300);
        return first?.done;
      },
      RECOVERY_BOUND_MS,
    );
    const seen: Outage = { dependency: dependency.name, killed, noticed, back, ready, firstAppend };
    outages.push(seen);
    // The load runs on a little before the next dependency goes.
    await sleep(1000);
    return seen;
  }

  beforeAll(async () => {
    // Each is kept as soon as it runs, so afterAll stops it even when another fails to start.
    const started = await Promise.allSettled([
      startOwnNats().then((s) => (nats = s)),
      startOwnRedisServer().then((s) => (redis = s)),
      startOwnPostgres().then((s) => (postgres = s)),
    ]);
    for (const result of started) if (result.status === 'rejected') throw result.reason;
    if (!nats || !redis || !postgres) throw new Error('a server did not start');
    stack = await startStack(id, {
      DATABASE_URL: postgres.url,
      NATS_URL: nats.url,
      REDIS_URL: redis.url,
      PARLEY_ADMIN_USERNAME: 'admin',
      PARLEY_ADMIN_PASSWORD: password,
      LOG_LEVEL: 'warn',
      RATE_LIMIT_PER_MINUTE: '100000',
      BOT_RATE_LIMIT_PER_MINUTE: '100000',
    });
    gateway = `http://127.0.0.1:${servicePort('gateway')}`;
    const login = await fetch(`${gateway}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'admin', password }),
    });
    expect(login.status).toBe(200);
    token = ((await login.json()) as { access_token: string }).access_token;
    const created = await send('check', 'POST', '/api/v1/bots', { name: 'steady-bot' });
    expect(created.status).toBe(201);
    botId = created.body.id;
    apiKey = created.body.api_key;
    for (let w = 0; w < WRITERS; w++) {
      const session = await send('check', 'POST', '/api/v1/sessions', { title: `writer ${w}` });
      expect(session.status).toBe(201);
      sessions.push(session.body.id);
    }
  }, 180_000);

  afterAll(async () => {
    stopping = true;
    // The writers finish the append in hand (retried until acknowledged), within bounds.
    await Promise.race([load, new Promise((r) => setTimeout(r, 30_000).unref())]);
    halted = true;
    if (stack) await stopStack(stack).catch(() => undefined);
    for (const dependency of [nats, redis, postgres]) await dependency?.stop().catch(() => undefined);
  }, 120_000);

  it('loses nothing, answers 503 at once while a dependency is away, and recovers without restarts', async () => {
    if (!stack || !nats || !redis || !postgres) throw new Error('the stack did not start');
    const pg = postgres;
    load = Promise.all([bot(), ...sessions.map((s, w) => writer(w, s))]).then(() => undefined);
    await until(
      'appends and usage accepted before the first fault',
      async () => (answers.filter((a) => a.status < 300).length >= 40 ? true : undefined),
      30_000,
    );

    // NATS: a request already waiting on a service when the connection drops is answered at
    // once too. The summary waits on a lock held here, then NATS goes away.
    let pending: Promise<Answer> | undefined;
    const locker = new Client({ connectionString: pg.url });
    locker.on('error', () => undefined);
    await locker.connect();
    let natsOutage: Outage;
    let pendingAnswer: Answer | undefined;
    try {
      natsOutage = await outage(nats, async () => {
        await locker.query('begin');
        await locker.query(`lock table "${id}_usage".usage_records in access exclusive mode`);
        pending = send('check', 'GET', '/api/v1/usage/summary?group_by=model');
        // Some statement waits on the lock (the summary's, or the usage consumer's): whichever
        // it is, the summary cannot be answered before the lock goes. (A statement parsed with
        // the extended protocol waits before pg_stat_activity shows its text.)
        await until(
          'a statement waiting on the lock',
          async () => {
            const { rows } = await locker.query(
              `select count(*)::int as n from pg_stat_activity
                where wait_event_type = 'Lock' and pid <> pg_backend_pid()`,
            );
            return rows[0].n > 0 ? true : undefined;
          },
          2000,
        );
      });
      pendingAnswer = await pending;
      await locker.query('rollback');
    } finally {
      await locker.end().catch(() => undefined);
    }

    // The bot's quota counters are in Redis from here on; the deltas they miss while Redis is
    // away must not be lost to them once it is back.
    const redisOutage = await outage(redis, async () => {
      const quota = await send('check', 'GET', `/api/v1/bots/${botId}/quota`, undefined, { 'x-api-key': apiKey });
      expect(quota.status).toBe(200);
    });
    const postgresOutage = await outage(pg);

    stopping = true;
    await load;
    report(outages, answers, pendingAnswer);

    // A call waiting on a service when NATS went was refused then, not left to time out.
    expect(pendingAnswer).toMatchObject({ status: 503, code: 'UPSTREAM_UNAVAILABLE', retryable: true });
    expect((pendingAnswer?.done ?? Infinity) - natsOutage.killed).toBeLessThan(ANSWER_BOUND_MS);

    // Every answer: a success, or 503 UPSTREAM_UNAVAILABLE retryable; none slower than the bound.
    const refused = answers.filter((a) => a.status >= 300 || a.status === 0);
    const unexpected = refused.filter((a) => a.status !== 503 || a.code !== 'UPSTREAM_UNAVAILABLE' || !a.retryable);
    expect(unexpected.slice(0, 10)).toEqual([]);
    const slow = answers.filter((a) => a.done - a.sent >= ANSWER_BOUND_MS);
    expect(slow.slice(0, 10)).toEqual([]);

    const during = (o: Outage) => answers.filter((a) => a.sent >= o.killed && a.sent < o.back);
    // NATS and PostgreSQL away: requests were refused (the test saw the outage), Redis away: none was.
    expect(during(natsOutage).filter((a) => a.status === 503).length).toBeGreaterThan(0);
    expect(during(postgresOutage).filter((a) => a.kind === 'append' && a.status === 503).length).toBeGreaterThan(0);
    expect(during(redisOutage).filter((a) => a.status >= 300)).toEqual([]);
    expect(during(redisOutage).filter((a) => a.kind === 'append').length).toBeGreaterThan(0);

    // Every acknowledged append is stored once, each session's seq is 1..n, message_count is n.
    const db = new Client({ connectionString: pg.url });
    await db.connect();
    try {
      for (const sessionId of sessions) {
        const mine = acked.get(sessionId) ?? new Map();
        const { rows } = await db.query<{ seq: number; client_message_id: string }>(
          `select seq, client_message_id from "${id}_message".messages where session_id = $1 order by seq`,
          [sessionId],
        );
        expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: rows.length }, (_, i) => i + 1));
        expect(rows.length).toBe(mine.size);
        expect(new Map(rows.map((r) => [r.client_message_id, r.seq]))).toEqual(mine);
        await until(
          `message_count of session ${sessionId} equal to ${mine.size}`,
          async () => {
            const s = await send('check', 'GET', `/api/v1/sessions/${sessionId}`);
            return s.body?.message_count === mine.size ? true : undefined;
          },
          30_000,
        );
      }

      // Usage: exactly what was accepted, once every event is ingested.
      const totals = await until(
        'every accepted usage event recorded',
        async () => {
          const { rows } = await db.query<{ n: number; input: string; output: string }>(
            `select count(*)::int as n, coalesce(sum(input_tokens), 0)::text as input,
                    coalesce(sum(output_tokens), 0)::text as output
               from "${id}_usage".usage_records where bot_id = $1`,
            [botId],
          );
          return rows[0].n >= accepted.events ? rows[0] : undefined;
        },
        60_000,
      );
      expect(totals).toEqual({ n: accepted.events, input: String(accepted.input), output: String(accepted.output) });
      const quota = await send('check', 'GET', `/api/v1/bots/${botId}/quota`, undefined, { 'x-api-key': apiKey });
      expect(quota.body?.used_tokens).toBe(accepted.input + accepted.output);
      const summary = await send('check', 'GET', `/api/v1/usage/summary?bot_id=${botId}&group_by=bot`);
      expect(summary.status).toBe(200);
      expect(summary.body.items).toEqual([
        expect.objectContaining({
          bot_id: botId,
          requests: accepted.events,
          input_tokens: accepted.input,
          output_tokens: accepted.output,
        }),
      ]);
    } finally {
      await db.end();
    }

    // No service exited, and every log line is structured (none from ioredis's own reporting).
    for (const service of stack.services.values()) {
      expect({ service: service.name, exit: service.process.exitCode, signal: service.process.signalCode }).toEqual({
        service: service.name,
        exit: null,
        signal: null,
      });
      const lines = readFileSync(service.log, 'utf8').split('\n').filter(Boolean);
      const raw = lines.filter((line) => {
        try {
          return typeof JSON.parse(line) !== 'object';
        } catch {
          return true;
        }
      });
      expect({ service: service.name, raw: raw.slice(0, 5) }).toEqual({ service: service.name, raw: [] });
    }
  }, 420_000);

  /** Prints what a client saw per dependency, and keeps it in .parley/fault-report.json. */
  function report(seen: Outage[], all: Answer[], pendingAnswer?: Answer): void {
    const rows = seen.map((o) => {
      const during = all.filter((a) => a.sent >= o.killed && a.sent < o.back);
      const refused = during.filter((a) => a.status === 503);
      const times = (refused.length > 0 ? refused : during).map((a) => a.done - a.sent);
      return {
        dependency: o.dependency,
        answers: during.length,
        refused: refused.length,
        p50_ms: percentile(times, 50),
        p99_ms: percentile(times, 99),
        max_ms: Math.max(...times),
        noticed_ms: o.noticed - o.killed,
        ready_after_back_ms: o.ready - o.back,
        append_after_back_ms: o.firstAppend - o.back,
      };
    });
    const out = {
      run: id,
      machine: `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}`,
      node: process.version,
      pending_at_nats_loss_ms: pendingAnswer ? pendingAnswer.done - (seen[0]?.killed ?? 0) : undefined,
      appends: [...acked.values()].reduce((n, m) => n + m.size, 0),
      usage_events: accepted.events,
      rows,
    };
    mkdirSync(join(ROOT, '.parley'), { recursive: true });
    writeFileSync(join(ROOT, '.parley', 'fault-report.json'), `${JSON.stringify(out, null, 2)}\n`);
    const table = rows
      .map(
        (r) =>
          `  ${r.dependency.padEnd(9)} answers ${String(r.answers).padStart(4)}, 503 ${String(r.refused).padStart(4)}, ` +
          `p50 ${r.p50_ms} ms, p99 ${r.p99_ms} ms; ready ${r.ready_after_back_ms} ms and first append ` +
          `${r.append_after_back_ms} ms after it came back`,
      )
      .join('\n');
    const outcomes = new Map<string, number>();
    for (const a of all) {
      const key = `${a.kind} ${a.status}${a.code ? ` ${a.code}` : ''}${a.done - a.sent >= ANSWER_BOUND_MS ? ' (slow)' : ''}`;
      outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
    }
    process.stdout.write(
      `faults: every answer, by outcome: ${JSON.stringify(Object.fromEntries(outcomes))}\n` +
        `faults: what a client saw (${out.machine}; ${out.appends} appends, ${out.usage_events} usage events; ` +
        `a call pending when NATS went: answered after ${out.pending_at_nats_loss_ms} ms)\n${table}\n`,
    );
  }
});
