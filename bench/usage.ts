/**
 * Usage accounting, measured on this machine, one JSON line per result:
 *
 * 1. Ingestion end to end (`ingest`): a backlog of events stored in the USAGE stream while the
 *    usage service is stopped → rows committed, for Parley's usage service (started again) and
 *    for a baseline that pulls the same events from the same stream with a bare durable
 *    consumer and a batched `INSERT … ON CONFLICT DO NOTHING` (pg driver) into a table of the
 *    same shape and indexes. Both are timed from their first fetch (their durable's first pull
 *    request) to their last commit (the row count reaching the backlog); Parley's start-up, from
 *    the process's spawn to its first fetch, is reported beside it. Rounds alternate which goes
 *    first; the median ratio closes the section. Nothing reads a consumer's info during a drain
 *    (on NATS 2.9 that stalls its deliveries).
 * 2. Resume after a pause (`sigcont`): the running service is stopped with SIGSTOP, the same
 *    backlog is published, and SIGCONT lets it go on: time to its first and last commit.
 * 3. Publish rate of one usage-client beside raw JetStream publishes with the same window (`publish`).
 * 4. Summary latency at 10M records through the gateway, beside the same totals computed by
 *    scanning the raw records directly (`summary`).
 *
 *   pnpm bench:usage        (BENCH_USAGE_EVENTS, default 100,000; BENCH_USAGE_ROUNDS, default 4;
 *                            BENCH_SUMMARY_RECORDS, default 10M; BENCH_ONLY=ingest,sigcont,publish,summary
 *                            picks sections, all by default; PARLEY_PROFILE=usage writes the service's
 *                            CPU profiles, one per start, under .parley/profiles)
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from 'pg';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type JsMsg } from '@nats-io/jetstream';
import { Durables } from '@parley/contracts';
import { UsageClient } from '@parley/usage-client';
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
  tail,
  waitReady,
  type RunningService,
  type Stack,
} from '../test/support/stack';
import { machine, summarize } from './stats';

const EVENTS = Number(process.env.BENCH_USAGE_EVENTS ?? 100_000);
const ROUNDS = Number(process.env.BENCH_USAGE_ROUNDS ?? 4);
const SUMMARY_RECORDS = Number(process.env.BENCH_SUMMARY_RECORDS ?? 10_000_000);
const BOTS = 20;
const BATCH = 500;
/** How often a drain's end (or a first commit) is probed in PostgreSQL. */
const POLL_MS = 5;

const print = (result: Record<string, unknown>) => console.log(JSON.stringify({ bench: 'usage', ...result }));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

const MODELS = [
  ['openai', 'gpt-4o'],
  ['openai', 'gpt-4o-mini'],
  ['anthropic', 'claude-sonnet'],
  ['deepseek', 'deepseek-chat'],
  ['qwen', 'qwen-max'],
  ['local', 'llama-3'],
] as const;
const CHANNELS = ['web', 'wechat', 'api', 'slack'];

function eventOf(round: number, i: number, bots: string[]) {
  const [provider, model] = MODELS[i % MODELS.length];
  return {
    request_id: `r${round}-${i}`,
    bot_id: bots[i % bots.length],
    user_id: null,
    channel: CHANNELS[i % CHANNELS.length],
    status: 'completed' as const,
    provider,
    model,
    input_tokens: 200 + (i % 1800),
    output_tokens: 20 + (i % 400),
    started_at: new Date(Date.now() - 60 * 60 * 1000 + (i % 3_000_000)).toISOString(),
    completed_at: new Date(Date.now() - 60 * 60 * 1000 + (i % 3_000_000) + 1500).toISOString(),
  };
}

async function publishAll(nc: NatsConnection, prefix: string, round: number, bots: string[]): Promise<Backlog> {
  const js = jetstream(nc);
  let firstSeq = Infinity;
  for (let from = 0; from < EVENTS; from += 2000) {
    const acks = [];
    for (let i = from; i < Math.min(EVENTS, from + 2000); i++) {
      const e = eventOf(round, i, bots);
      acks.push(
        js.publish(`${prefix}.usage.events.${e.bot_id}`, JSON.stringify(e), {
          msgID: `${e.bot_id}:${e.request_id}:${e.status}`,
        }),
      );
    }
    for (const ack of await Promise.all(acks)) {
      if (ack.duplicate) throw new Error(`event ${ack.seq} of round ${round} was taken for a duplicate`);
      firstSeq = Math.min(firstSeq, ack.seq);
    }
  }
  // One connection publishes in order, so the last event is the stream's last.
  const last = eventOf(round, EVENTS - 1, bots);
  return { firstSeq, last: { botId: last.bot_id, requestId: last.request_id } };
}

/** CPU seconds used so far by the processes whose command name matches, from /proc. */
function cpuSeconds(match: (comm: string, pid: number) => boolean): number {
  let ticks = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      if (!match(comm, Number(entry))) continue;
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // the process ended meanwhile
    }
  }
  return ticks / 100;
}

const count = async (pg: Client, table: string) =>
  Number((await pg.query(`select count(*)::int as n from ${table}`)).rows[0].n);

/** The CPU seconds used so far by the consumer (a process, or this one), PostgreSQL and NATS. */
function cpuParts(consumerPid: number | undefined): Record<string, () => number> {
  return {
    consumer: () =>
      consumerPid
        ? cpuSeconds((_, pid) => pid === consumerPid)
        : process.cpuUsage().user / 1e6 + process.cpuUsage().system / 1e6,
    postgres: () => cpuSeconds((comm) => comm === 'postgres'),
    nats: () => cpuSeconds((comm) => comm.startsWith('nats-server')),
  };
}

/** One round's backlog in the stream: the sequence of its first event, and its last event's key. */
interface Backlog {
  firstSeq: number;
  last: { botId: string; requestId: string };
}

/**
 * When a durable's consumer first fetches: its first pull request
 * (`$JS.API.CONSUMER.MSG.NEXT.<stream>.<durable>`), seen by a plain subscriber set up before the
 * consumer starts; the backlog is waiting, so the server answers it at once. Watching costs the
 * server nothing; reading the consumer's info instead would disturb the drain (NATS 2.9 then
 * serves the open pull requests in a trickle).
 */
async function firstPull(nc: NatsConnection, stream: string, durable: string) {
  let seen: ((at: number) => void) | undefined;
  const at = new Promise<number>((resolve) => (seen = resolve));
  const sub = nc.subscribe(`$JS.API.CONSUMER.MSG.NEXT.${stream}.${durable}`, {
    max: 1,
    callback: () => seen?.(performance.now()),
  });
  await nc.flush();
  return { at, cancel: () => sub.unsubscribe() };
}

/** Resolves as `fetched` does, or fails when the service's process ends first. */
async function unlessExited(fetched: Promise<number>, service: RunningService): Promise<number> {
  let timer: NodeJS.Timeout | undefined;
  const gone = new Promise<never>((_, reject) => {
    timer = setInterval(() => {
      const why = exited(service)();
      if (why) reject(new Error(why));
    }, 100);
  });
  try {
    return await Promise.race([fetched, gone]);
  } finally {
    clearInterval(timer);
  }
}

/**
 * When a drain's last commit landed. The row of the backlog's last event (the last a consumer
 * takes, in stream order) is probed every 5 ms through the `(bot_id, request_id)` index; once it
 * is there, the row count must reach the backlog (a batch still in flight beside the last one is
 * waited for). The answer is when the count that reached it was sent: its snapshot saw every row.
 * A `count(*)` polled throughout would keep PostgreSQL scanning the table on the same two cores.
 */
async function lastCommit(pg: Client, table: string, before: number, backlog: Backlog): Promise<number> {
  for (const deadline = Date.now() + 30 * 60 * 1000; Date.now() < deadline;) {
    const { rows } = await pg.query(
      `select exists (select 1 from ${table} where bot_id = $1 and request_id = $2) as there`,
      [backlog.last.botId, backlog.last.requestId],
    );
    if (rows[0].there) {
      for (;;) {
        const sent = performance.now();
        const stored = (await count(pg, table)) - before;
        if (stored >= EVENTS) {
          if (stored > EVENTS) throw new Error(`${table}: ${stored} rows for ${EVENTS} events`);
          return sent;
        }
        if (Date.now() > deadline) break;
        await sleep(10);
      }
    }
    await sleep(POLL_MS);
  }
  throw new Error(`${table} did not reach ${EVENTS} more rows`);
}

/**
 * A drain from its first fetch to its last commit, with the rows per second over that span and
 * the CPU seconds each part of the machine spent meanwhile (per 1000 rows). `firstFetch`
 * resolves with the `performance.now()` of the consumer's first pull request.
 */
async function drain(
  pg: Client,
  target: { table: string; before: number; backlog: Backlog },
  consumerPid: number | undefined,
  firstFetch: Promise<number>,
) {
  const first = await firstFetch;
  const parts = cpuParts(consumerPid);
  const cpu = Object.fromEntries(Object.entries(parts).map(([k, f]) => [k, f()]));
  const last = await lastCommit(pg, target.table, target.before, target.backlog);
  const perThousand = Object.fromEntries(
    Object.entries(parts).map(([k, f]) => [k, Math.round(((f() - cpu[k]) / EVENTS) * 1000 * 1000) / 1000]),
  );
  return {
    first,
    last,
    drain_ms: Math.round(last - first),
    rate: Math.round(EVENTS / ((last - first) / 1000)),
    cpu_s_per_1k: perThousand,
    /** CPU seconds of each part at the first fetch. */
    cpu_at_first: cpu,
  };
}

/** Batches the usage service has handled on its `usage-records` durable since it started, from its /metrics. */
async function batchesHandled(service: RunningService): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${service.port}/metrics`)).text();
  const line = text
    .split('\n')
    .find(
      (l) => l.startsWith('parley_consumer_batch_size_count{') && l.includes(`consumer="${Durables.usageRecords}"`),
    );
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

/** Why a service's process is no longer there, or undefined while it runs. */
const exited = (service: RunningService) => () =>
  service.process.exitCode !== null || service.process.signalCode !== null
    ? `${service.name} exited (${service.process.exitCode ?? service.process.signalCode}):\n${tail(service.log)}`
    : undefined;

const baselineDurable = (fromSeq: number) => `baseline-${fromSeq}`;

/** The bare baseline: a durable pull consumer, batches of 500, one multi-row INSERT … ON CONFLICT DO NOTHING, ack. */
async function baseline(nc: NatsConnection, id: string, pg: Client, table: string, fromSeq: number) {
  const jsm = await jetstreamManager(nc);
  const durable = baselineDurable(fromSeq);
  await jsm.consumers.add(`${id}_USAGE`, {
    durable_name: durable,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.StartSequence,
    opt_start_seq: fromSeq,
    filter_subject: `${id}.usage.events.*`,
    max_ack_pending: BATCH * 4,
  });
  const consumer = await jetstream(nc).consumers.get(`${id}_USAGE`, durable);
  const columns = [
    'bot_id',
    'request_id',
    'session_id',
    'user_id',
    'channel',
    'status',
    'provider',
    'model',
    'input_tokens',
    'output_tokens',
    'total_tokens',
    'started_at',
    'completed_at',
    'created_at',
    'updated_at',
  ];
  let stored = 0;
  let buffer: JsMsg[] = [];
  let wake: (() => void) | undefined;
  const messages = await consumer.consume({
    max_messages: BATCH * 2,
    callback: (m) => {
      buffer.push(m);
      wake?.();
    },
  });
  const worker = (async () => {
    while (stored < EVENTS) {
      if (buffer.length === 0) await new Promise<void>((r) => (wake = r));
      const batch = buffer.slice(0, BATCH);
      buffer = buffer.slice(batch.length);
      const params: unknown[] = [];
      const rows = batch.map((m) => {
        const e = m.json<ReturnType<typeof eventOf>>();
        const now = new Date();
        const values = [
          e.bot_id,
          e.request_id,
          null,
          e.user_id,
          e.channel,
          e.status,
          e.provider,
          e.model,
          e.input_tokens,
          e.output_tokens,
          e.input_tokens + e.output_tokens,
          e.started_at,
          e.completed_at,
          now,
          now,
        ];
        const at = params.length;
        params.push(...values);
        return `(${values.map((_, k) => `$${at + k + 1}`).join(',')})`;
      });
      await pg.query(
        `insert into ${table} (${columns.join(',')}) values ${rows.join(',')} on conflict (bot_id, request_id) do nothing`,
        params,
      );
      for (const m of batch) m.ack();
      stored += batch.length;
    }
  })();
  return {
    done: worker,
    stop: async () => {
      await messages.close();
      await jsm.consumers.delete(`${id}_USAGE`, durable);
    },
  };
}

async function login(gateway: string, password: string): Promise<string> {
  const res = await fetch(`${gateway}/api/v1/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'admin', password }),
  });
  return ((await res.json()) as { access_token: string }).access_token;
}

async function ingestion(stack: Stack, nc: NatsConnection, pg: Client, bots: string[]): Promise<void> {
  const id = stack.id;
  const usageTable = `"${id}_usage".usage_records`;
  const baselineTable = `"${id}_baseline".usage_records`;
  await pg.query(`create schema "${id}_baseline"`);
  await pg.query(`create table ${baselineTable} (like ${usageTable} including all)`);
  const logDir = join(ROOT, '.parley', 'test-logs', id);
  // The baseline writes on a connection of its own, as a script of its own would.
  const pgBaseline = new Client({ connectionString: DATABASE_URL });
  await pgBaseline.connect();
  const rounds: { ratio: number; parley: number; baseline: number; resume: number }[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    const usage = stack.services.get('usage');
    if (usage) await stopService(usage);
    const backlog = await publishAll(nc, id, round, bots);
    const stream = `${id}_USAGE`;
    // Parley: the stopped service is started again; the drain runs from its first fetch.
    const runParley = async () => {
      await pg.query('checkpoint');
      const before = await count(pg, usageTable);
      const pulled = await firstPull(nc, stream, Durables.usageRecords);
      const spawned = performance.now();
      const started = startService('usage', stack.env, logDir);
      stack.services.set('usage', started);
      const fetched = unlessExited(pulled.at, started).finally(pulled.cancel);
      const result = await drain(pg, { table: usageTable, before, backlog }, started.process.pid, fetched);
      await waitReady(started);
      return {
        ...result,
        // How the backlog was cut: about 200 for 100,000 events at the default batch of 500 (the first
        // ones smaller, taken before 500 have arrived); many more means deliveries came in a trickle.
        batches: await batchesHandled(started),
        resume_to_first_fetch_ms: Math.round(result.first - spawned),
        // The CPU the service's process spent until then (in 10 ms ticks): steadier than the
        // wall time on a machine that is not quiet.
        resume_cpu_ms: Math.round(result.cpu_at_first.consumer * 1000),
        // From the process's start: the window to pass to cpuprofile.js (--from-ms/--to-ms).
        window_ms: [Math.round(result.first - spawned), Math.round(result.last - spawned)],
      };
    };
    let stopBaseline: (() => Promise<void>) | undefined;
    const runBaseline = async () => {
      await pg.query('checkpoint');
      const before = await count(pg, baselineTable);
      const pulled = await firstPull(nc, stream, baselineDurable(backlog.firstSeq));
      const b = await baseline(nc, id, pgBaseline, baselineTable, backlog.firstSeq);
      stopBaseline = b.stop;
      return drain(pg, { table: baselineTable, before, backlog }, undefined, pulled.at);
    };
    let parley: Awaited<ReturnType<typeof runParley>>;
    let bare: Awaited<ReturnType<typeof runBaseline>>;
    if (round % 2 === 1) {
      parley = await runParley();
      bare = await runBaseline();
    } else {
      bare = await runBaseline();
      parley = await runParley();
    }
    await stopBaseline?.();
    const ratio = parley.rate / bare.rate;
    rounds.push({ ratio, parley: parley.rate, baseline: bare.rate, resume: parley.resume_to_first_fetch_ms });
    print({
      test: 'ingest',
      round,
      events: EVENTS,
      first: round % 2 === 1 ? 'parley' : 'baseline',
      parley_per_second: parley.rate,
      baseline_per_second: bare.rate,
      ratio: Math.round(ratio * 100) / 100,
      parley_drain_ms: parley.drain_ms,
      baseline_drain_ms: bare.drain_ms,
      resume_to_first_fetch_ms: parley.resume_to_first_fetch_ms,
      resume_cpu_ms: parley.resume_cpu_ms,
      parley_batches: parley.batches,
      parley_window_ms: parley.window_ms,
      parley_cpu_s_per_1k: parley.cpu_s_per_1k,
      baseline_cpu_s_per_1k: bare.cpu_s_per_1k,
    });
  }
  print({
    test: 'ingest-median',
    rounds: ROUNDS,
    events: EVENTS,
    median_ratio: Math.round(median(rounds.map((r) => r.ratio)) * 100) / 100,
    median_resume_to_first_fetch_ms: Math.round(median(rounds.map((r) => r.resume))),
    ratios: rounds.map((r) => Math.round(r.ratio * 100) / 100),
    parley_per_second: rounds.map((r) => r.parley),
    baseline_per_second: rounds.map((r) => r.baseline),
    resume_to_first_fetch_ms: rounds.map((r) => r.resume),
  });
  await pgBaseline.end();
}

/**
 * "Resume" as a paused process going on: the running usage service is stopped with SIGSTOP,
 * the backlog is published, and it is continued with SIGCONT. Its pull request was still open on
 * the server, so part of the backlog may already sit in its socket (`delivered_while_stopped`);
 * the figures are from SIGCONT to its first and its last commit.
 */
async function pauseResume(stack: Stack, nc: NatsConnection, pg: Client, bots: string[]): Promise<void> {
  const id = stack.id;
  const usageTable = `"${id}_usage".usage_records`;
  let usage = stack.services.get('usage');
  if (!usage || usage.process.exitCode !== null || usage.process.signalCode !== null) {
    usage = startService('usage', stack.env, join(ROOT, '.parley', 'test-logs', id));
    stack.services.set('usage', usage);
  }
  await waitReady(usage);
  const service = usage;
  const samples: { first: number; rate: number }[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    // The previous round's last acks settle.
    await sleep(1000);
    await pg.query('checkpoint');
    const before = await count(pg, usageTable);
    const batchesBefore = await batchesHandled(service);
    service.process.kill('SIGSTOP');
    const tag = 50 + round;
    const backlog = await publishAll(nc, id, tag, bots).finally(() => service.process.kill('SIGCONT'));
    const resumed = performance.now();
    const parts = cpuParts(service.process.pid);
    const cpu = Object.fromEntries(Object.entries(parts).map(([k, f]) => [k, f()]));
    // The first commit: any row of this round, probed through the (bot_id, request_id) index.
    let first = 0;
    for (const deadline = Date.now() + 5 * 60 * 1000; !first;) {
      const { rows } = await pg.query(
        `select exists (select 1 from ${usageTable}
           where bot_id = any($1::uuid[]) and request_id >= $2 and request_id < $3) as some`,
        [bots, `r${tag}-`, `r${tag}.`],
      );
      if (rows[0].some) first = performance.now();
      else if (Date.now() > deadline) throw new Error(`nothing of round ${tag} stored after SIGCONT`);
      else await sleep(POLL_MS);
    }
    const last = await lastCommit(pg, usageTable, before, backlog);
    const rate = Math.round(EVENTS / ((last - resumed) / 1000));
    samples.push({ first: first - resumed, rate });
    print({
      test: 'ingest-sigcont',
      round,
      events: EVENTS,
      resume_to_first_commit_ms: Math.round(first - resumed),
      resume_to_last_commit_ms: Math.round(last - resumed),
      parley_per_second: rate,
      parley_batches: (await batchesHandled(service)) - batchesBefore,
      parley_cpu_s_per_1k: Object.fromEntries(
        Object.entries(parts).map(([k, f]) => [k, Math.round(((f() - cpu[k]) / EVENTS) * 1000 * 1000) / 1000]),
      ),
    });
  }
  print({
    test: 'ingest-sigcont-median',
    rounds: ROUNDS,
    events: EVENTS,
    median_resume_to_first_commit_ms: Math.round(median(samples.map((s) => s.first))),
    median_per_second: Math.round(median(samples.map((s) => s.rate))),
  });
}

async function publishing(stack: Stack, nc: NatsConnection, bots: string[]): Promise<void> {
  const usage = stack.services.get('usage');
  if (usage) await stopService(usage);
  const n = Math.min(EVENTS, 100_000);
  const window = 1024;
  const rate = (t: number) => Math.round(n / ((performance.now() - t) / 1000));
  const workers = async (task: (i: number) => Promise<unknown>) => {
    let next = 0;
    await Promise.all(
      Array.from({ length: window }, async () => {
        while (next < n) await task(next++);
      }),
    );
  };
  const report = (round: number, i: number) => {
    const { bot_id: _bot, ...e } = eventOf(round, i, bots);
    return e;
  };

  // 1024 callers each awaiting its report, as the raw baseline below awaits each publish.
  const client = new UsageClient(nc, { botId: bots[0], subjectPrefix: stack.id, maxPending: window });
  let t = performance.now();
  await workers((i) => client.reportUsage(report(100, i)));
  const viaClient = rate(t);

  // A bot that fires every report without awaiting: the client's slots hold it to 1024 in flight.
  t = performance.now();
  await Promise.all(Array.from({ length: n }, (_, i) => client.reportUsage(report(101, i))));
  const flood = rate(t);

  const js = jetstream(nc);
  t = performance.now();
  await workers((i) => {
    const e = { ...eventOf(102, i, bots), bot_id: bots[0] };
    return js.publish(`${stack.id}.usage.events.${bots[0]}`, JSON.stringify(e), {
      msgID: `${e.bot_id}:${e.request_id}:${e.status}`,
    });
  });
  const raw = rate(t);
  print({
    test: 'publish',
    events: n,
    window,
    client_per_second: viaClient,
    client_fire_and_forget_per_second: flood,
    raw_jetstream_per_second: raw,
    ratio: Math.round((viaClient / raw) * 100) / 100,
  });
  const restarted = startService('usage', stack.env, join(ROOT, '.parley', 'test-logs', stack.id));
  stack.services.set('usage', restarted);
  await waitReady(restarted);
}

/** Fills records, the hourly rollup and the daily counters with `SUMMARY_RECORDS` requests over 30 days. */
async function fill(pg: Client, schema: string, bots: string[]): Promise<void> {
  const chunk = 1_000_000;
  const span = 30 * 24 * 3600;
  for (let from = 0; from < SUMMARY_RECORDS; from += chunk) {
    await pg.query(
      `insert into "${schema}".usage_records (bot_id, request_id, session_id, user_id, channel, status, provider, model,
         input_tokens, output_tokens, total_tokens, started_at, completed_at, cost, currency, price_id, created_at, updated_at)
       select ($1::uuid[])[1 + g % $2], 'fill-' || g, null,
              ('00000000-0000-4000-8000-' || lpad(to_hex(g % 5000), 12, '0'))::uuid,
              ($3::text[])[1 + g % 4], case when g % 10 = 0 then 'failed' else 'completed' end,
              ($4::text[])[1 + g % 6], ($5::text[])[1 + g % 6],
              200 + g % 1800, 20 + g % 400, 220 + g % 1800 + g % 400,
              now() - make_interval(secs => (g * 7919) % $6), now() - make_interval(secs => (g * 7919) % $6) + interval '2 s',
              case when g % 6 < 5 then ((200 + g % 1800) * 2.5 + (20 + g % 400) * 10) / 1000000 end,
              case when g % 6 < 5 then 'USD' end,
              case when g % 6 < 5 then '00000000-0000-4000-8000-000000000001'::uuid end,
              now(), now()
       from generate_series($7::bigint, $8::bigint) g`,
      [
        bots,
        bots.length,
        CHANNELS,
        MODELS.map((m) => m[0]),
        MODELS.map((m) => m[1]),
        span,
        from,
        Math.min(SUMMARY_RECORDS, from + chunk) - 1,
      ],
    );
  }
  await pg.query(
    `insert into "${schema}".usage_hourly (hour, bot_id, provider, model, channel, status, currency, requests, input_tokens,
       output_tokens, total_tokens, cost, unpriced_requests)
     select date_trunc('hour', started_at), bot_id, coalesce(provider, ''), coalesce(model, ''), coalesce(channel, ''),
            status, coalesce(currency, ''), count(*), sum(input_tokens), sum(output_tokens), sum(total_tokens),
            coalesce(sum(cost), 0), count(*) filter (where price_id is null)
     from "${schema}".usage_records where request_id like 'fill-%'
     group by 1, 2, 3, 4, 5, 6, 7
     on conflict (hour, bot_id, provider, model, channel, status, currency) do update set
       requests = usage_hourly.requests + excluded.requests, input_tokens = usage_hourly.input_tokens + excluded.input_tokens,
       output_tokens = usage_hourly.output_tokens + excluded.output_tokens, total_tokens = usage_hourly.total_tokens + excluded.total_tokens,
       cost = usage_hourly.cost + excluded.cost, unpriced_requests = usage_hourly.unpriced_requests + excluded.unpriced_requests`,
  );
  await pg.query(`vacuum analyze "${schema}".usage_records`);
  await pg.query(`vacuum analyze "${schema}".usage_hourly`);
}

async function summaries(stack: Stack, pg: Client, token: string, bots: string[]): Promise<void> {
  const schema = `${stack.id}_usage`;
  const t0 = performance.now();
  await fill(pg, schema, bots);
  const [{ n }] = (await pg.query(`select count(*)::int as n from "${schema}".usage_records`)).rows;
  const [{ h }] = (await pg.query(`select count(*)::int as h from "${schema}".usage_hourly`)).rows;
  print({ test: 'summary-fill', records: n, rollup_rows: h, seconds: Math.round((performance.now() - t0) / 1000) });

  const gateway = `http://127.0.0.1:${stack.services.get('gateway')?.port}`;
  const day = 24 * 3600 * 1000;
  const now = Date.now();
  const range = (days: number) =>
    `from=${new Date(now - days * day + 1234).toISOString()}&to=${new Date(now - 4321).toISOString()}`;
  const cases: { name: string; query: string; scan?: string; scanParams?: unknown[] }[] = [
    {
      name: '24h totals',
      query: range(1),
      scan: `select currency, count(*), sum(input_tokens), sum(output_tokens), sum(total_tokens), sum(cost)
             from "${schema}".usage_records where started_at >= $1 and started_at < $2 group by currency`,
    },
    {
      name: '30d by model and day',
      query: `${range(30)}&group_by=model,day`,
      scan: `select model, (date_trunc('day', started_at, 'UTC'))::date, currency, count(*), sum(input_tokens),
                    sum(output_tokens), sum(total_tokens), sum(cost)
             from "${schema}".usage_records where started_at >= $1 and started_at < $2 group by 1, 2, 3`,
    },
    {
      name: '7d by bot and hour, Asia/Shanghai',
      query: `${range(7)}&group_by=bot,hour&tz=Asia/Shanghai`,
      scan: `select bot_id, date_trunc('hour', started_at, 'Asia/Shanghai'), currency, count(*), sum(input_tokens),
                    sum(output_tokens), sum(total_tokens), sum(cost)
             from "${schema}".usage_records where started_at >= $1 and started_at < $2 group by 1, 2, 3`,
    },
    {
      name: '30d by channel and status',
      query: `${range(30)}&group_by=channel,status`,
      scan: `select channel, status, currency, count(*), sum(input_tokens), sum(output_tokens), sum(total_tokens), sum(cost)
             from "${schema}".usage_records where started_at >= $1 and started_at < $2 group by 1, 2, 3`,
    },
    { name: '24h by user (raw records)', query: `${range(1)}&group_by=user` },
    {
      name: '7d by day, Asia/Kolkata (rollup, records for the hours across midnight)',
      query: `${range(7)}&group_by=day&tz=Asia/Kolkata`,
    },
    { name: `30d one bot by model`, query: `${range(30)}&group_by=model&bot_id=${bots[3]}` },
  ];
  for (const c of cases) {
    const samples: number[] = [];
    let rows = 0;
    for (let i = 0; i < 12; i++) {
      const t = performance.now();
      const res = await fetch(`${gateway}/api/v1/usage/summary?${c.query}`, {
        headers: { authorization: `Bearer ${token}` },
      });
      const body = (await res.json()) as { items: unknown[] };
      if (res.status !== 200) throw new Error(`${c.name}: ${res.status} ${JSON.stringify(body)}`);
      rows = body.items.length;
      if (i >= 2) samples.push(performance.now() - t);
    }
    let scan: ReturnType<typeof summarize> | undefined;
    if (c.scan) {
      const params = new URLSearchParams(c.query);
      const scanSamples: number[] = [];
      for (let i = 0; i < 4; i++) {
        const t = performance.now();
        await pg.query(c.scan, [params.get('from'), params.get('to')]);
        if (i >= 1) scanSamples.push(performance.now() - t);
      }
      scan = summarize(scanSamples);
    }
    print({
      test: 'summary',
      case: c.name,
      records: n,
      rows,
      ...summarize(samples),
      ...(scan
        ? { raw_scan_p50_ms: scan.p50_ms, speedup: Math.round((scan.p50_ms / summarize(samples).p50_ms) * 10) / 10 }
        : {}),
    });
  }
}

async function main(): Promise<void> {
  print({ test: 'machine', ...machine() });
  const id = runId('bus');
  const password = randomBytes(12).toString('base64url');
  const stack = await startStack(id, {
    PARLEY_ADMIN_USERNAME: 'admin',
    PARLEY_ADMIN_PASSWORD: password,
    LOG_LEVEL: 'warn',
    RATE_LIMIT_PER_MINUTE: '100000',
  });
  const nc = await connect({ servers: NATS_URL });
  const pg = new Client({ connectionString: DATABASE_URL });
  await pg.connect();
  try {
    const gateway = `http://127.0.0.1:${stack.services.get('gateway')?.port}`;
    const token = await login(gateway, password);
    const bots: string[] = [];
    for (let i = 0; i < BOTS; i++) {
      const res = await fetch(`${gateway}/api/v1/bots`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify({ name: `bench-${i}` }),
      });
      bots.push(((await res.json()) as { id: string }).id);
    }
    const only = process.env.BENCH_ONLY?.split(',');
    if (!only || only.includes('ingest')) await ingestion(stack, nc, pg, bots);
    if (!only || only.includes('sigcont')) await pauseResume(stack, nc, pg, bots);
    if (!only || only.includes('publish')) await publishing(stack, nc, bots);
    if (!only || only.includes('summary')) await summaries(stack, pg, token, bots);
  } finally {
    await nc.close();
    await pg.end();
    await stopStack(stack);
    await cleanupRun(id);
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
