import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Client } from 'pg';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { prefixed, prefixedStream } from '@parley/contracts';
import { SCHEMA_CONSUMERS } from '../../libs/kit/src/ops/plan';
import { callGateway } from '../support/http';
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
  type ServiceName,
  type Stack,
} from '../support/stack';

const run = promisify(execFile);
const SCHEMA_SERVICES = ['access', 'session', 'message', 'usage'] as const;

/** Every table of a schema: its row count and the md5 of its rows in order (an outbox's without the id). */
type Checksums = Record<string, { rows: number; md5: string }>;

/**
 * Backup and restore (docs/operations.md, decisions/0025): one snapshot of the four schemas,
 * changes and deletions after it, a restore of the whole and of one schema, and the services
 * working afterwards with every event applied once.
 */
describe('backup and restore (fault)', () => {
  const id = runId('bak');
  const password = randomBytes(12).toString('base64url');
  const folder = join(ROOT, '.parley', 'test-logs', id);
  let stack: Stack;
  let gateway: string;
  let admin: string;
  let pg: Client;
  let nc: NatsConnection;
  let jsm: JetStreamManager;

  const env = { PARLEY_ADMIN_USERNAME: 'admin', PARLEY_ADMIN_PASSWORD: password, LOG_LEVEL: 'warn' };
  const schema = (service: string) => `${id}_${service}`;
  const call = (method: string, path: string, token = admin, body?: unknown) =>
    callGateway(gateway, method, path, token, body);
  const asBot = async (key: string, body: unknown) => {
    const res = await fetch(`${gateway}/api/v1/usage/events`, {
      method: 'POST',
      headers: { 'x-api-key': key, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return res.status;
  };
  const number = async (sql: string, params: unknown[] = []) => Number((await pg.query(sql, params)).rows[0].n);
  const until = async (what: string, probe: () => Promise<boolean>, timeoutMs = 20_000) => {
    const deadline = Date.now() + timeoutMs;
    while (!(await probe())) {
      if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 150));
    }
  };

  /** `main.js backup|restore` of the session service's build, as an operator runs it. */
  const operation = async (...args: string[]) => {
    try {
      const { stdout } = await run(process.execPath, ['dist/main.js', ...args], {
        cwd: join(ROOT, 'services', 'session'),
        env: { ...stack.env, NODE_OPTIONS: '' },
      });
      return stdout;
    } catch (error) {
      const failed = error as { stdout?: string; stderr?: string; message: string };
      throw new Error(`${args.join(' ')} failed: ${failed.message}\n${failed.stdout ?? ''}${failed.stderr ?? ''}`, {
        cause: error,
      });
    }
  };

  async function checksums(service: string): Promise<Checksums> {
    const { rows: tables } = await pg.query<{ table_name: string }>(
      `select table_name from information_schema.tables where table_schema = $1 and table_type = 'BASE TABLE' order by 1`,
      [schema(service)],
    );
    const sums: Checksums = {};
    for (const { table_name: table } of tables) {
      const drop = table === 'outbox' ? `- 'id'` : '';
      const { rows } = await pg.query<{ n: number; md5: string }>(
        `select count(*)::int as n, md5(coalesce(string_agg(r, E'\\n' order by r), '')) as md5
           from (select (to_jsonb(t) ${drop})::text as r from "${schema(service)}"."${table}" t) x`,
      );
      sums[table] = { rows: rows[0].n, md5: rows[0].md5 };
    }
    return sums;
  }
  const allChecksums = async () => {
    const all: Record<string, Checksums> = {};
    for (const service of SCHEMA_SERVICES) all[service] = await checksums(service);
    return all;
  };

  /** Every durable consumer has nothing pending or unacknowledged, and no outbox holds a row. */
  async function quiet(): Promise<void> {
    await until('consumers caught up and outboxes empty', async () => {
      for (const c of SCHEMA_CONSUMERS) {
        const info = await jsm.consumers.info(prefixedStream(id, c.stream), c.durable);
        if (info.num_pending > 0 || info.num_ack_pending > 0) return false;
      }
      for (const s of SCHEMA_SERVICES) {
        if ((await number(`select count(*) as n from "${schema(s)}".outbox where published_at is null`)) > 0) {
          return false;
        }
      }
      return true;
    });
  }

  async function startAll(): Promise<void> {
    stack = await startStack(id, env);
    gateway = `http://127.0.0.1:${stack.services.get('gateway')?.port}`;
    admin = await login('admin', password);
  }
  async function login(username: string, secret: string): Promise<string> {
    const res = await call('POST', '/api/v1/auth/login', undefined, { username, password: secret });
    if (res.status !== 200) throw new Error(`login ${username}: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body.access_token as string;
  }
  const restart = async (name: ServiceName) => {
    const service = startService(name, stack.env, folder);
    stack.services.set(name, service);
    await waitReady(service);
  };
  const messageCount = async (sessionId: string, token: string) =>
    (await call('GET', `/api/v1/sessions/${sessionId}`, token)).body?.message_count as number;
  const seqs = async (sessionId: string, token: string) => {
    const res = await call('GET', `/api/v1/sessions/${sessionId}/messages?limit=200`, token);
    return res.status === 200 ? (res.body.items as { seq: number }[]).map((m) => m.seq) : res.status;
  };
  const usageTotals = async () =>
    (
      await pg.query<{ records: string; tokens: string; hourly: string; daily: string }>(
        `select (select count(*) from "${schema('usage')}".usage_records) as records,
                (select coalesce(sum(total_tokens), 0) from "${schema('usage')}".usage_records) as tokens,
                (select coalesce(sum(total_tokens), 0) from "${schema('usage')}".usage_hourly) as hourly,
                (select coalesce(sum(total_tokens), 0) from "${schema('usage')}".usage_daily) as daily`,
      )
    ).rows[0];
  const report = (key: string, from: number, to: number) =>
    asBot(key, {
      events: Array.from({ length: to - from }, (_, i) => ({
        request_id: `r-${from + i}`,
        bot_id: bot.id,
        status: 'completed',
        provider: 'openai',
        model: 'gpt-4o',
        input_tokens: 100,
        output_tokens: 20,
        started_at: new Date(Date.now() - 60_000).toISOString(),
        completed_at: new Date(Date.now() - 58_000).toISOString(),
      })),
    });

  let owner: { id: string; token: string };
  let bot: { id: string; api_key: string };
  const sessions: Record<string, string> = {};

  beforeAll(async () => {
    mkdirSync(folder, { recursive: true });
    pg = new Client({ connectionString: DATABASE_URL });
    await pg.connect();
    nc = await connect({ servers: NATS_URL });
    jsm = await jetstreamManager(nc);
    await startAll();
  });

  afterAll(async () => {
    if (stack) await stopStack(stack);
    await pg?.end();
    await nc?.close();
    await cleanupRun(id);
  });

  it('restores every schema as it was, and the services go on with each event applied once', async () => {
    // The consumers a restore repositions are the services' own, with the same filters.
    for (const c of SCHEMA_CONSUMERS) {
      const info = await jsm.consumers.info(prefixedStream(id, c.stream), c.durable);
      expect(info.config.filter_subject).toBe(prefixed(id, c.filterSubject));
    }

    // Before the backup: users, a bot, sessions with messages, usage.
    const created = await call('POST', '/api/v1/users', admin, { username: 'owner', password: 'owner-password-1' });
    expect(created.status).toBe(201);
    owner = { id: created.body.id, token: await login('owner', 'owner-password-1') };
    const doomed = await call('POST', '/api/v1/users', admin, { username: 'doomed', password: 'doomed-password-1' });
    bot = (await call('POST', '/api/v1/bots', owner.token, { name: 'restore-bot' })).body;
    for (const [name, messages] of [
      ['s1', 5],
      ['s2', 3],
    ] as const) {
      sessions[name] = (await call('POST', '/api/v1/sessions', owner.token, { title: name })).body.id;
      for (let i = 0; i < messages; i += 1) {
        const appended = await call('POST', `/api/v1/sessions/${sessions[name]}/messages`, owner.token, {
          role: 'user',
          content: `${name} message ${i + 1}`,
        });
        expect(appended.status).toBe(201);
      }
    }
    expect(await report(bot.api_key, 0, 10)).toBe(202);
    await until(
      '10 usage records',
      async () => (await number(`select count(*) as n from "${schema('usage')}".usage_records`)) === 10,
    );
    await quiet();
    expect(await messageCount(sessions.s1, owner.token)).toBe(5);

    // The backup catches an event in the message service's outbox: the counters of a sixth
    // message, which wait there 500 ms (coalesced); the process is stopped before it relays them.
    const message = stack.services.get('message')!;
    let caught = false;
    for (let attempt = 0; attempt < 5 && !caught; attempt += 1) {
      await call('POST', `/api/v1/sessions/${sessions.s1}/messages`, owner.token, { role: 'user', content: 's1 more' });
      message.process.kill('SIGSTOP');
      caught = (await number(`select count(*) as n from "${schema('message')}".outbox`)) > 0;
      if (!caught) message.process.kill('SIGCONT');
    }
    expect(caught).toBe(true);
    const before = await allChecksums();
    const file = join(folder, 'parley.dump');
    const said = await operation('backup', file);
    expect(said).toContain(`backed up ${SCHEMA_SERVICES.map(schema).join(', ')} (extensions: pg_trgm)`);
    const backedUp = await allChecksums();
    expect(backedUp).toEqual(before);
    message.process.kill('SIGCONT');
    const s1Messages = (await seqs(sessions.s1, owner.token)) as number[];
    expect(s1Messages.length).toBeGreaterThan(5);
    // Its counters arrive once the relay runs again.
    await until('s1 counted', async () => (await messageCount(sessions.s1, owner.token)) === s1Messages.length);

    // After the backup: more of everything, changes, deletions, and an accident.
    const s3 = (await call('POST', '/api/v1/sessions', owner.token, { title: 's3' })).body.id;
    await call('POST', `/api/v1/sessions/${s3}/messages`, owner.token, {
      role: 'user',
      content: 'gone after the restore',
    });
    expect((await call('PATCH', `/api/v1/sessions/${sessions.s2}`, owner.token, { title: 'renamed' })).status).toBe(
      200,
    );
    expect((await call('DELETE', `/api/v1/users/${doomed.body.id}`)).status).toBe(204);
    expect(await report(bot.api_key, 10, 15)).toBe(202);
    await until(
      '15 usage records',
      async () => (await number(`select count(*) as n from "${schema('usage')}".usage_records`)) === 15,
    );
    await quiet();
    // An event the restored message service must never see: s1 deleted while it is away.
    await stopService(stack.services.get('message')!);
    expect((await call('DELETE', `/api/v1/sessions/${sessions.s1}`, owner.token)).status).toBe(204);
    await pg.query(`delete from "${schema('usage')}".usage_records where request_id in ('r-0', 'r-1')`);

    // The whole restore, with every service stopped.
    await stopStack(stack);
    const restored = await operation('restore', file);
    expect(restored).toContain(`restored ${SCHEMA_SERVICES.map(schema).join(', ')}`);
    expect(restored).toContain('reset the caches in Redis');
    expect(await allChecksums()).toEqual(backedUp);

    await startAll();
    await quiet();
    // s1 is back with its messages: the deletion from the discarded timeline was skipped.
    expect(await seqs(sessions.s1, owner.token)).toEqual(s1Messages);
    // Its counters say six: the outbox row the backup caught was relayed again under a new id
    // (the first relay's id is in the stream's duplicate window), and applied once.
    expect(await messageCount(sessions.s1, owner.token)).toBe(s1Messages.length);
    const next = await call('POST', `/api/v1/sessions/${sessions.s1}/messages`, owner.token, {
      role: 'user',
      content: 'after',
    });
    expect(next.body.seq).toBe(s1Messages.length + 1);
    await until(
      's1 counted again',
      async () => (await messageCount(sessions.s1, owner.token)) === s1Messages.length + 1,
    );
    expect((await call('GET', `/api/v1/sessions/${s3}`, owner.token)).status).toBe(404);
    expect((await call('GET', `/api/v1/sessions/${sessions.s2}`, owner.token)).body.title).toBe('s2');
    expect(await seqs(sessions.s2, owner.token)).toEqual([1, 2, 3]);
    await login('doomed', 'doomed-password-1');
    // Usage: the ten records restored, and the five reported after the backup applied again
    // from the stream; every event of the fifteen counted once, in the records and the rollups.
    await until('usage replayed', async () => Number((await usageTotals()).records) === 15);
    await quiet();
    expect(await usageTotals()).toEqual({ records: '15', tokens: '1800', hourly: '1800', daily: '1800' });
    const quota = await call('GET', `/api/v1/bots/${bot.id}/quota`, owner.token);
    expect(quota.status).toBe(200);

    // A live backup (every service running), then the message schema alone is restored.
    const second = join(folder, 'second.dump');
    await operation('backup', second);
    const messageBackup = await checksums('message');
    await pg.query(`delete from "${schema('message')}".messages`);
    expect((await call('DELETE', `/api/v1/sessions/${sessions.s2}`, owner.token)).status).toBe(204);
    const s4 = (await call('POST', '/api/v1/sessions', owner.token, { title: 's4' })).body.id;
    await quiet();

    const refused = operation('restore', second, '--schema', 'message');
    await expect(refused).rejects.toThrow(/stop these services first.*_message/);
    await stopService(stack.services.get('message')!);
    const others = [await checksums('access'), await checksums('session'), await checksums('usage')];
    const partial = await operation('restore', second, '--schema', 'message');
    expect(partial).toContain(`restored ${schema('message')} from`);
    expect(partial).toContain('message-session-events: applies');
    expect(await checksums('message')).toEqual(messageBackup);
    expect([await checksums('access'), await checksums('session'), await checksums('usage')]).toEqual(others);

    await restart('message');
    await quiet();
    // The session service was not restored, so its events since are applied again: s2 was
    // deleted after the second backup and its messages go; s4 exists. s1's messages are back.
    expect(await seqs(sessions.s1, owner.token)).toEqual([...s1Messages, s1Messages.length + 1]);
    expect(
      await number(`select count(*) as n from "${schema('message')}".messages where session_id = $1`, [sessions.s2]),
    ).toBe(0);
    expect(
      (await call('POST', `/api/v1/sessions/${s4}/messages`, owner.token, { role: 'user', content: 'hi' })).body.seq,
    ).toBe(1);
    const last = await call('POST', `/api/v1/sessions/${sessions.s1}/messages`, owner.token, {
      role: 'user',
      content: 'last',
    });
    expect(last.body.seq).toBe(s1Messages.length + 2);
    await until(
      's1 counted at last',
      async () => (await messageCount(sessions.s1, owner.token)) === s1Messages.length + 2,
    );
  }, 150_000);
});
