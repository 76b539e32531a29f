/**
 * Gateway append and list (newest 50) at 64 connections beside a baseline — one Fastify
 * process with no NATS hop doing the same insert (gapless per-session seq) and select on the
 * same Postgres — and the list latency of sessions of 1k and 1M messages. Load comes from
 * `hey`. One JSON line per result.
 *
 *   node bench/dist/bench/messages.js        (after `tsc -p bench/tsconfig.json`)
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Client } from 'pg';
import { DATABASE_URL, ROOT, cleanupRun, runId, startStack, stopStack } from '../test/support/stack';
import { machine } from './stats';

const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 64);
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 6000);
const BIG = Number(process.env.BENCH_BIG_SESSION ?? 1_000_000);

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
async function hops(ports: Record<string, number>, run: () => void): Promise<Record<string, number>> {
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
  run();
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

async function main(): Promise<void> {
  const id = runId('bmsg');
  const password = randomBytes(12).toString('base64url');
  const stack = await startStack(id, {
    PARLEY_ADMIN_USERNAME: 'admin',
    PARLEY_ADMIN_PASSWORD: password,
    RATE_LIMIT_PER_MINUTE: '100000000',
    LOG_LEVEL: 'warn',
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
    print({ result: 'setup', connections: CONNECTIONS, requests: REQUESTS, machine: machine() });

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
        `insert into "${id}_message".messages (id, session_id, seq, role, content, tokens, metadata, media, copied, sensitive_status, created_at)
         select gen_random_uuid(), $1, g, 'user', 'seeded message ' || g, 0, '{}', '[]', false, 'unchecked', now()
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
  } finally {
    baseline.kill('SIGTERM');
    await stopStack(stack);
    await cleanupRun(id);
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
