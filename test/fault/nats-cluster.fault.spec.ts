import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from 'pg';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager, type JetStreamManager, type StreamInfo } from '@nats-io/jetstream';
import {
  DLQ_STREAM,
  DOMAIN_STREAM,
  DOMAIN_SUBJECTS,
  Durables,
  USAGE_STREAM,
  prefixed,
  prefixedStream,
} from '@parley/contracts';
import {
  DATABASE_URL,
  ROOT,
  cleanupRun,
  freePort,
  runId,
  startService,
  startStack,
  stopService,
  stopStack,
  tail,
  type Stack,
} from '../support/stack';
import { callGateway } from '../support/http';
import { Load } from '../support/load';
import { startNatsCluster, type NatsCluster } from '../support/nats-cluster';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The services on a three-node NATS cluster (NATS_URL lists all three) with their streams at
 * JETSTREAM_REPLICAS=3; one node is killed with SIGKILL under load and started again
 * (docs/operations.md, "Scale-out").
 */
describe('a three-node NATS cluster (fault)', () => {
  const id = runId('ncl');
  const password = randomBytes(12).toString('base64url');
  const streams = [USAGE_STREAM, DOMAIN_STREAM, DLQ_STREAM].map((s) => prefixedStream(id, s));
  let cluster: NatsCluster;
  let stack: Stack;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let pg: Client;
  let gateway: string;

  /** A JetStream API call, asked again while the cluster elects a new leader after a kill. */
  const settled = async <T>(call: () => Promise<T>, timeoutMs = 30_000): Promise<T> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        return await call();
      } catch (error) {
        if (Date.now() > deadline) throw error;
        await sleep(250);
      }
    }
  };

  /** Problems with a stream's copies: fewer than three, or one that is offline, behind or not current. */
  const replicaProblems = (info: StreamInfo): string[] => {
    const problems: string[] = [];
    if (info.config.num_replicas !== 3) problems.push(`${info.config.name}: num_replicas ${info.config.num_replicas}`);
    const replicas = info.cluster?.replicas ?? [];
    if (!info.cluster?.leader) problems.push(`${info.config.name}: no leader`);
    if (replicas.length !== 2) problems.push(`${info.config.name}: ${replicas.length} followers`);
    for (const r of replicas) {
      if (!r.current || r.offline || (r.lag ?? 0) > 0) {
        problems.push(`${info.config.name}: ${r.name} current=${r.current} offline=${r.offline} lag=${r.lag}`);
      }
    }
    return problems;
  };

  const allCurrent = async (timeoutMs: number): Promise<string[]> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const problems = (await Promise.all(streams.map((s) => settled(() => jsm.streams.info(s))))).flatMap(
        replicaProblems,
      );
      if (problems.length === 0 || Date.now() > deadline) return problems;
      await sleep(250);
    }
  };

  beforeAll(async () => {
    cluster = await startNatsCluster(3, `parley-${id}`);
    nc = await connect({ servers: cluster.url.split(','), maxReconnectAttempts: -1, reconnectTimeWait: 250 });
    jsm = await jetstreamManager(nc);
    // A DOMAIN stream from before, with one copy: the services raise it to JETSTREAM_REPLICAS.
    await jsm.streams.add({
      name: prefixedStream(id, DOMAIN_STREAM),
      subjects: [prefixed(id, DOMAIN_SUBJECTS)],
      num_replicas: 1,
    });
    stack = await startStack(id, {
      NATS_URL: cluster.url,
      JETSTREAM_REPLICAS: '3',
      PARLEY_ADMIN_USERNAME: 'admin',
      PARLEY_ADMIN_PASSWORD: password,
      LOG_LEVEL: 'warn',
    });
    gateway = `http://127.0.0.1:${stack.services.get('gateway')?.port}`;
    pg = new Client({ connectionString: DATABASE_URL });
    await pg.connect();
  }, 240_000);

  afterAll(async () => {
    await nc?.close();
    await pg?.end();
    if (stack) await stopStack(stack);
    await cluster?.stop();
    await cleanupRun(id);
  });

  it('keeps USAGE, DOMAIN and DLQ at three replicas, raising the DOMAIN stream that had one', async () => {
    expect(await allCurrent(30_000)).toEqual([]);
  });

  it('refuses more replicas than the cluster has servers with a plain start-up error', async () => {
    const logDir = join(ROOT, '.parley', 'test-logs', id, 'r5');
    mkdirSync(logDir, { recursive: true });
    const service = startService(
      'usage',
      { ...stack.env, JETSTREAM_REPLICAS: '5', USAGE_HTTP_PORT: String(await freePort()) },
      logDir,
    );
    let timer: NodeJS.Timeout | undefined;
    try {
      const exited = await Promise.race([
        new Promise<number | null>((r) => service.process.once('exit', (code) => r(code))),
        new Promise<string>((r) => (timer = setTimeout(() => r('still running after 60 s'), 60_000))),
      ]);
      const log = tail(service.log, 20);
      expect({ exited, log }).toEqual({
        exited: 78,
        log: expect.stringContaining('JETSTREAM_REPLICAS=5: NATS cannot keep 5 copies'),
      });
      expect(log).not.toMatch(/^\s+at /m);
    } finally {
      clearTimeout(timer);
      await stopService(service, 'SIGKILL');
    }
    // The streams stay as they were.
    expect(await allCurrent(10_000)).toEqual([]);
  }, 90_000);

  it('loses nothing when a node is killed under load, and the node catches up when it is back', async () => {
    const admin = (await callGateway(gateway, 'POST', '/api/v1/auth/login', undefined, { username: 'admin', password }))
      .body.access_token;
    const adminId = (await callGateway(gateway, 'GET', '/api/v1/me', admin)).body.id;
    const bot = (await callGateway(gateway, 'POST', '/api/v1/bots', admin, { name: 'cluster' })).body;
    const load = new Load(
      { gateways: [gateway], botId: bot.id, botKey: bot.api_key, userId: adminId },
      { sessions: 4, writersPerSession: 2, usageWriters: 2, usageBatch: 20 },
      id,
    );
    // The node that leads the USAGE stream: its loss costs an election on the busiest path.
    const leader = (await jsm.streams.info(prefixedStream(id, USAGE_STREAM))).cluster?.leader;
    const victim = cluster.nodes.find((n) => n.name === leader);
    if (!victim) throw new Error(`no node leads ${USAGE_STREAM} (${leader})`);
    try {
      await load.start();
      await load.progress(80);
      await cluster.kill(victim);
      await load.progress(80);
      await cluster.start(victim);
      await load.progress(40);
    } finally {
      await load.stop();
    }
    process.stdout.write(`nats cluster (${cluster.version}, killed ${victim.name}) load: ${load.summary()}\n`);
    expect(load.unexpected).toEqual([]);

    await cluster.waitHealthy();
    expect(await allCurrent(60_000)).toEqual([]);
    expect(await load.checkMessages(gateway)).toEqual([]);
    const drained = async () => {
      const info = await settled(() => jsm.consumers.info(prefixedStream(id, USAGE_STREAM), Durables.usageRecords));
      return info.num_pending === 0 && info.num_ack_pending === 0;
    };
    expect(await load.checkUsage(pg, `${id}_usage`, drained)).toEqual([]);
    // The restarted node holds every message of the stream again.
    const usage = await jsm.streams.info(prefixedStream(id, USAGE_STREAM));
    expect([usage.cluster?.leader, ...(usage.cluster?.replicas ?? []).map((r) => r.name)].sort()).toEqual(
      cluster.nodes.map((n) => n.name).sort(),
    );
    expect(usage.state.messages).toBe(load.usage.events);
  }, 300_000);
});
