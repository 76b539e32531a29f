/**
 * Gateway append and list (newest 50) at 64 connections beside a baseline — one Fastify
 * process with no NATS hop doing the same insert (gapless per-session seq) and select on the
 * same Postgres. Two workloads:
 *
 * - `one`: all connections on ONE session (load from `hey`), then the list latency of sessions
 *   of 1k and 1M messages and an export of the big one;
 * - `many`: 64 sessions of 8 users (8 each), requests round-robin over the 64 sessions (load
 *   from bench/rr-load.ts), with the CPU each process spends per request and the services'
 *   resident memory.
 *
 * One JSON line per result.
 *
 *   node bench/dist/bench/messages.js        (after `tsc -p bench/tsconfig.json`)
 *   BENCH_MESSAGES=many BENCH_MANY_OPS=append node bench/dist/bench/messages.js
 *   BENCH_MESSAGES=many BENCH_TRACE_RATIO=0.1 BENCH_MANY_ROUNDS=1 …   (traces exported, 10 % sampled)
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { DATABASE_URL, ROOT, cleanupRun, runId, startStack, stopStack, type Stack } from '../test/support/stack';
import { startOtlpReceiver } from '../test/support/otlp-receiver';
import {
  countPerRequest,
  cpuPerRequest,
  cpuSnapshot,
  rssMiB,
  v8WorkerTicks,
  writeSyscalls,
  type ProcGroup,
} from './proc';
import type { RrPlan, RrResult } from './rr-load';
import { machine } from './stats';

const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 64);
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 6000);
const BIG = Number(process.env.BENCH_BIG_SESSION ?? 1_000_000);
/** Which workloads run: `one` (one session, `hey`), `many` (64 sessions of 8 users, round-robin). */
const WORKLOADS = new Set((process.env.BENCH_MESSAGES ?? 'one,many').split(','));
/** Which operations the `many` workload measures: `append`, `list`. */
const MANY_OPS = new Set((process.env.BENCH_MANY_OPS ?? 'append,list').split(','));
const MANY_REQUESTS = Number(process.env.BENCH_MANY_REQUESTS ?? 6000);
const MANY_ROUNDS = Number(process.env.BENCH_MANY_ROUNDS ?? 2);
const USERS = 8;
const SESSIONS_PER_USER = 8;

const print = (result: Record<string, unknown>) => console.log(JSON.stringify({ bench: 'messages', ...result }));

interface HeyResult {
  per_second: number;
  p50_ms: number;
  p99_ms: number;
  statuses: Record<string, number>;
}

/** Sum and count of every histogram series of a metric, keyed by its label set. */
async function histogram(url: string, metric: string): Promise<Map<string, { sum: number; count: number }>> {
  const read = async () => (await fetch(url, { headers: { connection: 'close' } })).text();
  const text = await read().catch(async () => {
    await new Promise((r) => setTimeout(r, 500));
    return read();
  });
  const out = new Map<string, { sum: number; count: number }>();
  for (const line of text.split('\n')) {
    const m = new RegExp(`^${metric}_(sum|count)\\{([^}]*)\\} ([\\d.e+-]+)$`).exec(line);
    if (!m) continue;
    const entry = out.get(m[2]) ?? { sum: 0, count: 0 };
    entry[m[1] as 'sum' | 'count'] = Number(m[3]);
    out.set(m[2], entry);
  }
  return out;
}

/** Mean time per call in each hop during a run: the difference of two scrapes. */
async function hops(ports: Record<string, number>, run: () => unknown): Promise<Record<string, number>> {
  const scrape = async () => {
    const all = new Map<string, { sum: number; count: number }>();
    for (const [service, port] of Object.entries(ports)) {
      for (const metric of ['parley_http_request_duration_seconds', 'parley_nats_request_duration_seconds']) {
        for (const [labels, v] of await histogram(`http://127.0.0.1:${port}/metrics`, metric)) {
          if (labels.includes('/metrics') || labels.includes('/readyz')) continue;
          all.set(`${service} ${labels.replace(/service="[^"]*",?/, '')}`, v);
        }
      }
    }
    return all;
  };
  const before = await scrape();
  await run();
  const after = await scrape();
  const means: Record<string, number> = {};
  for (const [key, v] of after) {
    const b = before.get(key) ?? { sum: 0, count: 0 };
    const count = v.count - b.count;
    if (count >= 10) means[key] = Math.round(((v.sum - b.sum) / count) * 100000) / 100;
  }
  return means;
}

function hey(args: string[]): HeyResult {
  const run = spawnSync('hey', args, { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 });
  if (run.status !== 0) throw new Error(`hey failed: ${run.stderr || run.stdout}`);
  const out = run.stdout;
  const number = (re: RegExp) => Number(re.exec(out)?.[1] ?? NaN);
  const statuses: Record<string, number> = {};
  for (const m of out.matchAll(/\[(\d{3})\]\s+(\d+) responses/g)) statuses[m[1]] = Number(m[2]);
  return {
    per_second: Math.round(number(/Requests\/sec:\s+([\d.]+)/)),
    p50_ms: Math.round(number(/50%+ in ([\d.]+) secs/) * 100000) / 100,
    p99_ms: Math.round(number(/99%+ in ([\d.]+) secs/) * 100000) / 100,
    statuses,
  };
}

/** Runs bench/rr-load.ts as its own process with `plan`; resolves with its result. */
function rrLoad(plan: RrPlan): Promise<RrResult> {
  const dir = mkdtempSync(join(tmpdir(), 'parley-rr-'));
  const file = join(dir, 'plan.json');
  writeFileSync(file, JSON.stringify(plan), { mode: 0o600 });
  return new Promise<RrResult>((resolve, reject) => {
    const child = spawn(process.execPath, [join(ROOT, 'bench', 'dist', 'bench', 'rr-load.js'), file], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.once('exit', (code) => {
      rmSync(dir, { recursive: true, force: true });
      if (code === 0) resolve(JSON.parse(out) as RrResult);
      else reject(new Error(`rr-load exited ${code}: ${out}`));
    });
  });
}

interface ManyContext {
  stack: Stack;
  gateway: string;
  base: string;
  baselinePid: number;
  adminToken: string;
  /** Date.now() before the stack started: load windows are printed relative to it (to cut CPU profiles). */
  started: number;
}

/**
 * 64 sessions of 8 users, round-robin, 64 connections: append and list newest 50, alternating
 * baseline and Parley for MANY_ROUNDS rounds, with CPU µs per request per process from /proc.
 */
async function manySessions(ctx: ManyContext): Promise<void> {
  const { stack, gateway, base } = ctx;
  const pid = (name: string) => stack.services.get(name as never)?.process.pid ?? 0;
  const services = ['gateway', 'access', 'session', 'message', 'usage'];
  const rss = () => Object.fromEntries(services.map((name) => [name, rssMiB(pid(name))]));

  const call = async (method: string, path: string, token: string, body?: unknown) => {
    const res = await fetch(`${gateway}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: body ? JSON.stringify(body) : undefined,
    });
    if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
    return res.json() as Promise<Record<string, unknown> & { id: string; access_token: string }>;
  };
  // 8 users with 8 sessions each; target i is user i mod 8, so consecutive requests change user.
  const owners: { token: string; sessions: string[] }[] = [];
  for (let u = 0; u < USERS; u++) {
    const username = `bench-${u}-${randomBytes(3).toString('hex')}`;
    const password = randomBytes(12).toString('base64url');
    await call('POST', '/api/v1/users', ctx.adminToken, { username, password });
    const login = await fetch(`${gateway}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username, password }),
    });
    const token = ((await login.json()) as { access_token: string }).access_token;
    const sessions: string[] = [];
    for (let s = 0; s < SESSIONS_PER_USER; s++) {
      sessions.push((await call('POST', '/api/v1/sessions', token, { title: `bench ${u}.${s}` })).id);
    }
    owners.push({ token, sessions });
  }
  const parleyTargets = (suffix: string) =>
    Array.from({ length: USERS * SESSIONS_PER_USER }, (_, i) => {
      const owner = owners[i % USERS];
      return {
        url: `${gateway}/api/v1/sessions/${owner.sessions[Math.floor(i / USERS)]}/messages${suffix}`,
        headers: { authorization: `Bearer ${owner.token}` },
      };
    });
  const baselineSessions = Array.from({ length: USERS * SESSIONS_PER_USER }, () => crypto.randomUUID());
  const baselineTargets = (suffix: string) =>
    baselineSessions.map((sid) => ({ url: `${base}/sessions/${sid}/messages${suffix}` }));
  const body = JSON.stringify({
    role: 'user',
    content:
      'Could you summarise the three points we agreed on yesterday about the release plan, and say which one is still open?',
    tokens: 27,
    metadata: { client: 'bench', locale: 'en-GB', trace_id: randomBytes(8).toString('hex') },
  });

  if (!MANY_OPS.has('append')) {
    // Listing alone: give every session (both sides) the 50 messages an append round would have.
    for (const [i, target] of parleyTargets('').entries()) {
      const res = await fetch(`${target.url}/batch`, {
        method: 'POST',
        headers: { ...target.headers, 'content-type': 'application/json' },
        body: JSON.stringify({ messages: Array.from({ length: 60 }, () => JSON.parse(body) as unknown) }),
      });
      if (res.status !== 201) throw new Error(`seeding session ${i}: ${res.status} ${await res.text()}`);
    }
    for (const target of baselineTargets('')) {
      for (let n = 0; n < 60; n++) {
        const res = await fetch(target.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
        if (res.status >= 300) throw new Error(`seeding the baseline: ${res.status}`);
      }
    }
  }

  const parleyGroups: Record<string, ProcGroup> = {
    ...Object.fromEntries(services.map((name) => [name, { pids: [pid(name)] }])),
    postgres: { comm: 'postgres' },
    nats: { comm: 'nats-server' },
    redis: { comm: 'redis-server' },
  };
  const baselineGroups: Record<string, ProcGroup> = {
    baseline: { pids: [ctx.baselinePid] },
    postgres: { comm: 'postgres' },
    nats: { comm: 'nats-server' },
    redis: { comm: 'redis-server' },
  };
  const ports = Object.fromEntries([...stack.services].map(([name, svc]) => [name, svc.port]));
  const peak: Record<string, number> = {};

  /** The groups that are Node processes of their own (the services, the baseline). */
  const nodeGroups = (groups: Record<string, ProcGroup>) =>
    Object.fromEntries(Object.entries(groups).filter(([, group]) => 'pids' in group));

  /** One measured run: CPU snapshots around it, RSS sampled every 250 ms while it runs. */
  const measured = async (plan: RrPlan, groups: Record<string, ProcGroup>, sampleRss: boolean) => {
    const sampler = sampleRss
      ? setInterval(() => {
          for (const [name, v] of Object.entries(rss())) if (v !== undefined) peak[name] = Math.max(peak[name] ?? 0, v);
        }, 250)
      : undefined;
    const from = Date.now() - ctx.started;
    const before = cpuSnapshot(groups);
    const writesBefore = cpuSnapshot(groups, writeSyscalls);
    const workersBefore = cpuSnapshot(nodeGroups(groups), v8WorkerTicks);
    const result = await rrLoad(plan);
    const after = cpuSnapshot(groups);
    const writesAfter = cpuSnapshot(groups, writeSyscalls);
    const workersAfter = cpuSnapshot(nodeGroups(groups), v8WorkerTicks);
    const to = Date.now() - ctx.started;
    clearInterval(sampler);
    const { cpu_us: loadCpu, ...rest } = result;
    return {
      ...rest,
      cpu_us_per_request: {
        ...cpuPerRequest(before, after, result.completed),
        load_generator: Math.round(loadCpu / Math.max(1, result.completed)),
      },
      write_syscalls_per_request: countPerRequest(writesBefore, writesAfter, result.completed),
      // Part of cpu_us_per_request: the Node processes' V8 worker threads (mostly the heap's).
      v8_worker_cpu_us_per_request: cpuPerRequest(workersBefore, workersAfter, result.completed),
      window_ms: [from, to],
    };
  };

  const ops = [
    { op: 'append', method: 'POST' as const, body, suffix: '', baselineSuffix: '' },
    {
      op: 'list newest 50',
      method: 'GET' as const,
      body: undefined,
      suffix: '?order=desc&limit=50',
      baselineSuffix: '',
    },
  ].filter((o) => MANY_OPS.has(o.op.split(' ')[0]));
  for (const o of ops) {
    const plan = (targets: RrPlan['targets'], requests: number): RrPlan => ({
      method: o.method,
      body: o.body,
      requests,
      connections: CONNECTIONS,
      targets,
    });
    // Warm-up (not a round): every session gets a few requests on both sides.
    const warm = CONNECTIONS * 10;
    const wb = await rrLoad(plan(baselineTargets(o.baselineSuffix), warm));
    const wp = await rrLoad(plan(parleyTargets(o.suffix), warm));
    print({
      result: `many: ${o.op}, warm-up (not a round)`,
      baseline: { per_second: wb.per_second, failures: wb.failures },
      parley: { per_second: wp.per_second, failures: wp.failures },
    });
    for (let round = 1; round <= MANY_ROUNDS; round++) {
      const b = await measured(plan(baselineTargets(o.baselineSuffix), MANY_REQUESTS), baselineGroups, false);
      let p: Awaited<ReturnType<typeof measured>> | undefined;
      const hopMeans = await hops(ports, async () => {
        p = await measured(plan(parleyTargets(o.suffix), MANY_REQUESTS), parleyGroups, o.op === 'append');
      });
      if (!p) throw new Error('no result');
      print({
        result: `many: ${o.op}, round ${round}`,
        baseline: b,
        parley: p,
        throughput_ratio: +(p.per_second / b.per_second).toFixed(3),
        p99_ratio: +(p.p99_ms / b.p99_ms).toFixed(2),
        parley_hops_mean_ms: hopMeans,
      });
    }
  }
  if (MANY_OPS.has('append')) print({ result: 'many: services resident MiB, peak under append load', rss_mib: peak });
}

async function main(): Promise<void> {
  const id = runId('bmsg');
  const stackStarted = Date.now();
  const password = randomBytes(12).toString('base64url');
  // BENCH_TRACE_RATIO=0.1: the services export traces (to a receiver in this process) and sample
  // that share of requests; unset, tracing is as configured by default (no endpoint).
  const traceRatio = process.env.BENCH_TRACE_RATIO;
  const receiver = traceRatio ? await startOtlpReceiver() : undefined;
  const stack = await startStack(id, {
    PARLEY_ADMIN_USERNAME: 'admin',
    PARLEY_ADMIN_PASSWORD: password,
    RATE_LIMIT_PER_MINUTE: '100000000',
    LOG_LEVEL: 'warn',
    ...(receiver
      ? {
          OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
          OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
          OTEL_TRACES_SAMPLER_ARG: traceRatio,
        }
      : {}),
  });
  const baseline = spawn(process.execPath, [join(ROOT, 'bench', 'dist', 'bench', 'baseline-server.js')], {
    env: { ...process.env, DATABASE_URL, BASELINE_SCHEMA: `${id}_baseline` },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    const baselinePort = await new Promise<number>((resolve, reject) => {
      baseline.stdout?.on('data', (chunk: Buffer) => {
        const m = /listening (\d+)/.exec(chunk.toString());
        if (m) resolve(Number(m[1]));
      });
      baseline.once('exit', (code) => reject(new Error(`baseline exited ${code}`)));
    });
    // Resident memory of each service once started and idle (before any request but readiness probes).
    await new Promise((r) => setTimeout(r, 3000));
    print({
      result: 'services resident MiB, idle after start-up',
      rss_mib: Object.fromEntries([...stack.services].map(([name, svc]) => [name, rssMiB(svc.process.pid ?? 0)])),
      baseline_rss_mib: rssMiB(baseline.pid ?? 0),
    });
    const gateway = `http://127.0.0.1:${stack.services.get('gateway')?.port}`;
    const base = `http://127.0.0.1:${baselinePort}`;
    const json = async (method: string, path: string, token?: string, body?: unknown) => {
      const res = await fetch(`${gateway}${path}`, {
        method,
        headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), 'content-type': 'application/json' },
        body: body ? JSON.stringify(body) : undefined,
      });
      if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
      return res.json() as Promise<Record<string, unknown> & { id: string; access_token: string }>;
    };
    const token = (await json('POST', '/api/v1/auth/login', undefined, { username: 'admin', password })).access_token;
    const auth = ['-H', `Authorization: Bearer ${token}`];
    const body = JSON.stringify({
      role: 'user',
      content: 'Hello, this is a benchmark message of ordinary length.',
      tokens: 12,
    });
    const post = ['-m', 'POST', '-T', 'application/json', '-d', body];
    const load = ['-n', String(REQUESTS), '-c', String(CONNECTIONS)];
    print({
      result: 'setup',
      connections: CONNECTIONS,
      requests: REQUESTS,
      tracing: receiver ? { exporter: 'otlp-http', sampled: Number(traceRatio) } : 'no endpoint',
      machine: machine(),
    });

    if (WORKLOADS.has('one')) {
      // Append: one session each (both serialize on the session's seq row), then many sessions would only help both.
      const session = await json('POST', '/api/v1/sessions', token, { title: 'bench' });
      const baselineSession = crypto.randomUUID();
      for (const round of [1, 2]) {
        const b = hey([...load, ...post, `${base}/sessions/${baselineSession}/messages`]);
        const p = hey([...load, ...post, ...auth, `${gateway}/api/v1/sessions/${session.id}/messages`]);
        print({
          result: `append round ${round}`,
          baseline: b,
          parley: p,
          throughput_ratio: +(p.per_second / b.per_second).toFixed(2),
          p99_ratio: +(p.p99_ms / b.p99_ms).toFixed(2),
        });
      }
      const ports = Object.fromEntries([...stack.services].map(([name, svc]) => [name, svc.port]));
      const appendHops = await hops(ports, () =>
        hey([...load, ...post, ...auth, `${gateway}/api/v1/sessions/${session.id}/messages`]),
      );
      print({ result: 'append: mean ms per call in each hop', hops: appendHops });
      for (const round of [1, 2]) {
        const b = hey([...load, `${base}/sessions/${baselineSession}/messages`]);
        const p = hey([...load, ...auth, `${gateway}/api/v1/sessions/${session.id}/messages?order=desc&limit=50`]);
        print({
          result: `list newest 50, round ${round}`,
          baseline: b,
          parley: p,
          throughput_ratio: +(p.per_second / b.per_second).toFixed(2),
          p99_ratio: +(p.p99_ms / b.p99_ms).toFixed(2),
        });
      }

      const listHops = await hops(ports, () =>
        hey([...load, ...auth, `${gateway}/api/v1/sessions/${session.id}/messages?order=desc&limit=50`]),
      );
      print({ result: 'list: mean ms per call in each hop', hops: listHops });

      // List latency against the session's size: 1k and 1M messages, written straight into the message schema.
      const small = await json('POST', '/api/v1/sessions', token, { title: 'small' });
      const big = await json('POST', '/api/v1/sessions', token, { title: 'big' });
      await json('POST', `/api/v1/sessions/${small.id}/messages`, token, { role: 'user', content: 'first' });
      await json('POST', `/api/v1/sessions/${big.id}/messages`, token, { role: 'user', content: 'first' });
      const pg = new Client({ connectionString: DATABASE_URL });
      await pg.connect();
      const started = Date.now();
      for (const [sid, n] of [
        [small.id, 1000],
        [big.id, BIG],
      ] as const) {
        await pg.query(
          `insert into "${id}_message".messages (id, session_id, seq, role, content, tokens, metadata, media, copied, sensitive_status, size_bytes, created_at)
           select gen_random_uuid(), $1, g, 'user', 'seeded message ' || g, 0, '{}', '[]', false, 'unchecked', 300, now()
           from generate_series(2, $2::int) g`,
          [sid, n],
        );
        await pg.query(
          `update "${id}_message".session_scopes set last_seq = $2, message_count = $2 where session_id = $1`,
          [sid, n],
        );
      }
      await pg.query(`analyze "${id}_message".messages`);
      await pg.end();
      print({ result: 'seeded', small: 1000, big: BIG, seconds: Math.round((Date.now() - started) / 1000) });
      for (const [label, sid] of [
        ['1k messages', small.id],
        [`${BIG / 1000}k messages`, big.id],
        ['1k messages again', small.id],
        [`${BIG / 1000}k messages again`, big.id],
      ] as const) {
        const r = hey([
          '-n',
          '3000',
          '-c',
          '8',
          ...auth,
          `${gateway}/api/v1/sessions/${sid}/messages?order=desc&limit=50`,
        ]);
        print({ result: `list newest 50 of ${label}`, concurrency: 8, ...r });
      }

      // Export of the big session: streamed, so the gateway's memory should not grow with it.
      const rss = async () => {
        const text = await (await fetch(`${gateway}/metrics`, { headers: { connection: 'close' } })).text();
        return Number(/parley_process_process_resident_memory_bytes\{[^}]*\} (\d+)/.exec(text)?.[1] ?? 0);
      };
      const before = await rss();
      let peak = before;
      const sampler = setInterval(() => void rss().then((v) => (peak = Math.max(peak, v))), 250);
      const exportStarted = Date.now();
      const res = await fetch(`${gateway}/api/v1/sessions/${big.id}/export?format=json`, {
        headers: { authorization: `Bearer ${token}` },
      });
      let bytes = 0;
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) bytes += chunk.length;
      clearInterval(sampler);
      print({
        result: `export of ${BIG / 1000}k messages (json)`,
        status: res.status,
        mib: Math.round(bytes / 2 ** 20),
        seconds: Math.round((Date.now() - exportStarted) / 100) / 10,
        gateway_rss_mib_before: Math.round(before / 2 ** 20),
        gateway_rss_mib_peak: Math.round(peak / 2 ** 20),
      });
    }
    if (WORKLOADS.has('many')) {
      await manySessions({
        stack,
        gateway,
        base,
        baselinePid: baseline.pid ?? 0,
        adminToken: token,
        started: stackStarted,
      });
    }
    if (receiver) {
      const spans = (await (await fetch(`${receiver.url}/spans`)).json()) as { traceId: string }[];
      print({ result: 'spans exported', spans: spans.length, traces: new Set(spans.map((x) => x.traceId)).size });
    }
  } finally {
    baseline.kill('SIGTERM');
    await stopStack(stack);
    await cleanupRun(id);
    receiver?.server.close();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
