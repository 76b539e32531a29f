import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, credsAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import { DLQ_STREAM, prefixed, prefixedStream, type DeadLetter } from '@parley/contracts';
import { UsageClient } from '@parley/usage-client';
import { ROOT, SERVICES, cleanupRun, freePort, runId, startStack, stopStack, type Stack } from '../support/stack';

/**
 * NATS as a boundary, against a nats-server in JWT/operator mode that this test starts from the
 * output of `deploy/nats/init`: every service logs in with its own credentials, nobody reads
 * another's replies, bots get short-lived credentials scoped to their own subjects.
 */
const id = runId('op');
const dir = mkdtempSync(join(tmpdir(), 'parley-nats-'));
const encoder = new TextEncoder();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let natsPort: number;
let server: ChildProcess;
let stack: Stack;
let gateway: string;
let admin: string;
const opened: NatsConnection[] = [];

async function api(method: string, path: string, options: { token?: string; key?: string; body?: unknown } = {}) {
  const res = await fetch(`${gateway}${path}`, {
    method,
    headers: {
      ...(options.body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
      ...(options.key ? { 'x-api-key': options.key } : {}),
    },
    body: options.body !== undefined ? JSON.stringify(options.body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as Record<string, any>) : {} };
}

async function eventually<T>(probe: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(200);
  }
}

/** A connection with a creds file's text; permission errors are collected rather than thrown. */
async function connectWith(creds: string, inboxPrefix?: string) {
  const nc = await connect({
    servers: `127.0.0.1:${natsPort}`,
    authenticator: credsAuthenticator(encoder.encode(creds)),
    ...(inboxPrefix ? { inboxPrefix } : {}),
    reconnect: false,
  });
  opened.push(nc);
  const violations: string[] = [];
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'error' && 'error' in s) violations.push(String(s.error));
    }
  })();
  return { nc, violations };
}

/** A completed usage event of one token each way, timed now. */
function usageEvent(requestId: string, botId: string) {
  const now = new Date().toISOString();
  return {
    request_id: requestId,
    bot_id: botId,
    status: 'completed' as const,
    provider: 'openai',
    model: 'gpt-4o',
    input_tokens: 1,
    output_tokens: 1,
    started_at: now,
    completed_at: now,
  };
}

const serviceCreds = (service: string) => readFileSync(join(dir, 'creds', `${service}.creds`), 'utf8');
const p = (subject: string) => prefixed(id, subject);

beforeAll(async () => {
  natsPort = await freePort();
  const init = spawnSync(
    process.execPath,
    [
      join(ROOT, 'deploy', 'nats', 'init.mjs'),
      '--out',
      dir,
      '--prefix',
      id,
      '--listen',
      `127.0.0.1:${natsPort}`,
      '--store-dir',
      join(dir, 'jetstream'),
    ],
    { encoding: 'utf8' },
  );
  if (init.status !== 0) throw new Error(`deploy/nats/init failed: ${init.stderr}${init.stdout}`);
  server = spawn('nats-server', ['-c', join(dir, 'nats.conf')], { stdio: 'ignore' });
  await eventually(async () => {
    try {
      const nc = await connect({
        servers: `127.0.0.1:${natsPort}`,
        authenticator: credsAuthenticator(encoder.encode(serviceCreds('usage'))),
      });
      await nc.close();
      return true;
    } catch {
      return undefined;
    }
  });
  const account = Object.fromEntries(
    readFileSync(join(dir, 'account.env'), 'utf8')
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1).trim()]),
  );
  const password = 'operator-mode-admin-1';
  stack = await startStack(
    id,
    { NATS_URL: `nats://127.0.0.1:${natsPort}`, PARLEY_ADMIN_USERNAME: 'admin', PARLEY_ADMIN_PASSWORD: password },
    Object.fromEntries(
      SERVICES.map((s) => [
        s,
        {
          NATS_CREDS: join(dir, 'creds', `${s}.creds`),
          ...(s === 'access' ? account : {}),
        },
      ]),
    ),
  );
  gateway = `http://127.0.0.1:${stack.services.get('gateway')?.port}`;
  const login = await api('POST', '/api/v1/auth/login', { body: { username: 'admin', password } });
  expect(login.status).toBe(200);
  admin = login.body.access_token;
}, 180_000);

afterAll(async () => {
  for (const nc of opened) await nc.close().catch(() => undefined);
  if (stack) await stopStack(stack);
  server?.kill('SIGTERM');
  await cleanupRun(id).catch(() => undefined);
  rmSync(dir, { recursive: true, force: true });
});

describe('NATS in operator mode', () => {
  it('serves the API with every service logged in under its own credentials', async () => {
    const session = await api('POST', '/api/v1/sessions', { token: admin, body: { title: 'operator mode' } });
    expect(session.status).toBe(201);
    const message = await api('POST', `/api/v1/sessions/${session.body.id}/messages`, {
      token: admin,
      body: { role: 'user', content: 'hello' },
    });
    expect(message.status).toBe(201);
    const bot = await api('POST', '/api/v1/bots', { token: admin, body: { name: 'op-bot' } });
    const posted = await api('POST', '/api/v1/usage/events', {
      key: bot.body.api_key,
      body: usageEvent('op-1', bot.body.id),
    });
    expect(posted.status).toBe(202);
    await eventually(async () => {
      const records = await api('GET', `/api/v1/usage/records?bot_id=${bot.body.id}`, { token: admin });
      return records.body.items?.length === 1 ? true : undefined;
    });
  });

  it('lets no other service or bot read a login reply', async () => {
    const bot = await api('POST', '/api/v1/bots', { token: admin, body: { name: 'sniffer-bot' } });
    const minted = await api('POST', `/api/v1/bots/${bot.body.id}/nats-credentials`, {
      key: bot.body.api_key,
      body: {},
    });
    expect(minted.status).toBe(201);
    const seen: string[] = [];
    const refused: string[] = [];
    const sniffers = [
      await connectWith(serviceCreds('session')),
      await connectWith(serviceCreds('usage')),
      await connectWith(minted.body.creds, minted.body.inbox_prefix),
    ];
    for (const [n, { nc }] of sniffers.entries()) {
      for (const subject of ['>', '_INBOX.>', '_INBOX_gateway.>', `${id}.>`]) {
        const sub = nc.subscribe(subject, {
          callback: (err, msg) => {
            if (err) refused.push(`${n} ${subject}`);
            else seen.push(msg.string());
          },
        });
        void sub.closed.then((why) => {
          if (why && !refused.includes(`${n} ${subject}`)) refused.push(`${n} ${subject}`);
        });
      }
    }
    await sleep(500);
    const login = await api('POST', '/api/v1/auth/login', {
      body: { username: 'admin', password: 'operator-mode-admin-1' },
    });
    expect(login.status).toBe(200);
    await sleep(500);
    expect(seen.filter((m) => m.includes('access_token') || m.includes('refresh_token'))).toEqual([]);
    // Every one of those subscriptions was refused by the server, for every sniffer.
    expect(refused.sort()).toEqual(
      [0, 1, 2].flatMap((n) => ['>', '_INBOX.>', '_INBOX_gateway.>', `${id}.>`].map((s) => `${n} ${s}`)).sort(),
    );
  });

  it('mints bot credentials that publish its usage and ask its quota, and nothing else', async () => {
    const bot = await api('POST', '/api/v1/bots', { token: admin, body: { name: 'minted-bot' } });
    const other = await api('POST', '/api/v1/bots', { token: admin, body: { name: 'other-bot' } });
    const minted = await api('POST', `/api/v1/bots/${bot.body.id}/nats-credentials`, {
      key: bot.body.api_key,
      body: { ttl_seconds: 600 },
    });
    expect(minted.status).toBe(201);
    expect(minted.body).toMatchObject({
      inbox_prefix: `_INBOX_${bot.body.id}`,
      publish: [p(`usage.events.${bot.body.id}`), p(`activity.events.${bot.body.id}`), p('usage.quota.check')],
      subscribe: [`_INBOX_${bot.body.id}.>`],
    });
    expect(Date.parse(minted.body.expires_at) - Date.now()).toBeGreaterThan(590_000);
    const { nc, violations } = await connectWith(minted.body.creds, minted.body.inbox_prefix);
    const js = jetstream(nc);
    const now = new Date().toISOString();
    const event = (requestId: string, botId = bot.body.id) => ({
      request_id: requestId,
      bot_id: botId,
      status: 'completed',
      provider: 'openai',
      model: 'gpt-4o',
      input_tokens: 3,
      output_tokens: 2,
      started_at: now,
      completed_at: now,
    });
    const ack = await js.publish(p(`usage.events.${bot.body.id}`), JSON.stringify(event('m-1')), {
      msgID: `${bot.body.id}:m-1:completed`,
    });
    const again = await js.publish(p(`usage.events.${bot.body.id}`), JSON.stringify(event('m-1')), {
      msgID: `${bot.body.id}:m-1:completed`,
    });
    expect(again.duplicate).toBe(true);
    expect(ack.seq).toBeGreaterThan(0);
    const quota = await nc.request(p('usage.quota.check'), JSON.stringify({ bot_id: bot.body.id }), { timeout: 5000 });
    expect(quota.json()).toMatchObject({ period: expect.any(String) });
    await eventually(async () => {
      const records = await api('GET', `/api/v1/usage/records?bot_id=${bot.body.id}`, { token: admin });
      return records.body.items?.length === 1 ? true : undefined;
    });

    // Another bot's subject, an internal subject with a forged admin actor: refused by the server.
    nc.publish(p(`usage.events.${other.body.id}`), JSON.stringify(event('x-1', other.body.id)));
    nc.publish(
      p('access.users.create'),
      JSON.stringify({
        actor: { type: 'user', id: randomUUID(), is_admin: true },
        username: 'forged',
        password: 'password-123',
      }),
    );
    await nc.flush().catch(() => undefined);
    await eventually(async () => (violations.length >= 2 ? true : undefined), 5000);
    const users = await api('GET', '/api/v1/users?q=forged', { token: admin });
    expect(users.body.items).toEqual([]);
    const others = await api('GET', `/api/v1/usage/records?bot_id=${other.body.id}`, { token: admin });
    expect(others.body.items).toEqual([]);
  });

  it('keeps a usage-client reporting across expiries, renewing through the gateway with its API key', async () => {
    const bot = await api('POST', '/api/v1/bots', { token: admin, body: { name: 'renewing-bot' } });
    const client = await UsageClient.connect(`nats://127.0.0.1:${natsPort}`, {
      botId: bot.body.id,
      subjectPrefix: id,
      credentials: { gatewayUrl: gateway, apiKey: bot.body.api_key, ttlSeconds: 3 },
      onError: () => undefined,
    });
    const started = Date.now();
    const publicKeys = new Set<string>();
    let n = 0;
    try {
      while (Date.now() - started < 8000) {
        const { bot_id: _bot, ...report } = usageEvent(`renew-${n++}`, bot.body.id);
        await client.reportUsage(report);
        if (client.credentials) publicKeys.add(client.credentials.publicKey);
        await sleep(100);
      }
    } finally {
      await client.close();
    }
    expect(publicKeys.size).toBeGreaterThanOrEqual(3);
    await eventually(async () => {
      const records = await api('GET', `/api/v1/usage/records?bot_id=${bot.body.id}&limit=200`, { token: admin });
      return records.body.items?.length === n ? true : undefined;
    });
  });

  it("renews only for an enabled bot; a disabled bot's events are dead-lettered; expired credentials are refused", async () => {
    const bot = await api('POST', '/api/v1/bots', { token: admin, body: { name: 'short-lived-bot' } });
    const short = await api('POST', `/api/v1/bots/${bot.body.id}/nats-credentials`, {
      key: bot.body.api_key,
      body: { ttl_seconds: 2 },
    });
    const held = await api('POST', `/api/v1/bots/${bot.body.id}/nats-credentials`, {
      key: bot.body.api_key,
      body: { ttl_seconds: 600 },
    });
    expect(held.status).toBe(201);
    const { nc } = await connectWith(held.body.creds, held.body.inbox_prefix);

    expect((await api('PATCH', `/api/v1/bots/${bot.body.id}`, { token: admin, body: { enabled: false } })).status).toBe(
      200,
    );
    // Its own key no longer authenticates; its owner is told the bot is disabled.
    expect(
      (await api('POST', `/api/v1/bots/${bot.body.id}/nats-credentials`, { key: bot.body.api_key, body: {} })).status,
    ).toBe(401);
    expect((await api('POST', `/api/v1/bots/${bot.body.id}/nats-credentials`, { token: admin, body: {} })).status).toBe(
      403,
    );

    // What it still holds publishes, and the usage service dead-letters it.
    await jetstream(nc).publish(
      p(`usage.events.${bot.body.id}`),
      JSON.stringify(usageEvent('after-disable', bot.body.id)),
      { msgID: `${bot.body.id}:after-disable:completed` },
    );
    const usageNc = (await connectWith(serviceCreds('usage'), '_INBOX_usage')).nc;
    const jsm = await jetstreamManager(usageNc);
    const letter = await eventually(async () => {
      const stream = prefixedStream(id, DLQ_STREAM);
      const info = await jsm.streams.info(stream);
      for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
        const m = await jsm.streams.getMessage(stream, { seq }).catch(() => null);
        const l = m?.json<DeadLetter>();
        if ((l?.event as { request_id?: string } | undefined)?.request_id === 'after-disable') return l;
      }
      return undefined;
    });
    expect(letter).toMatchObject({ subject: `usage.events.${bot.body.id}`, code: 'BOT_DISABLED' });
    const records = await api('GET', `/api/v1/usage/records?bot_id=${bot.body.id}`, { token: admin });
    expect(records.body.items).toEqual([]);

    // The two-second credentials have expired: the server refuses them.
    await sleep(Math.max(0, Date.parse(short.body.expires_at) - Date.now()) + 1500);
    await expect(connectWith(short.body.creds, short.body.inbox_prefix)).rejects.toThrow(/authorization|expired/i);
  });
});
