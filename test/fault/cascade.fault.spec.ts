import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Client } from 'pg';
import {
  DATABASE_URL,
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

/** Kills services with SIGKILL in the middle of a cross-service change; on restart nothing is lost. */
describe('cascade delete under failure (fault)', () => {
  const id = runId('flt');
  const password = randomBytes(12).toString('base64url');
  let stack: Stack;
  let gateway: string;
  let token: string;

  const call = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${gateway}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  };
  const count = async (sql: string, params: unknown[]) => {
    const pg = new Client({ connectionString: DATABASE_URL });
    await pg.connect();
    try {
      return (await pg.query(sql, params)).rows[0].n as number;
    } finally {
      await pg.end();
    }
  };
  const messagesOf = (sessionId: string) =>
    count(`select count(*)::int as n from "${id}_message".messages where session_id = $1`, [sessionId]);
  const until = async (probe: () => Promise<boolean>, timeoutMs = 30_000) => {
    const deadline = Date.now() + timeoutMs;
    while (!(await probe())) {
      if (Date.now() > deadline) throw new Error('condition not met in time');
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  const restart = async (name: 'message' | 'session') => {
    const service = startService(name, stack.env, join(ROOT, '.parley', 'test-logs', id));
    stack.services.set(name, service);
    await waitReady(service);
  };

  beforeAll(async () => {
    stack = await startStack(id, {
      PARLEY_ADMIN_USERNAME: 'admin',
      PARLEY_ADMIN_PASSWORD: password,
      LOG_LEVEL: 'warn',
    });
    gateway = `http://127.0.0.1:${stack.services.get('gateway')?.port}`;
    const login = await fetch(`${gateway}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'admin', password }),
    });
    token = ((await login.json()) as { access_token: string }).access_token;
  });

  afterAll(async () => {
    if (stack) await stopStack(stack);
    await cleanupRun(id);
  });

  it('deletes the messages once a killed message service comes back', async () => {
    const s = (await call('POST', '/api/v1/sessions', { title: 'doomed' })).body;
    const batch = await call('POST', `/api/v1/sessions/${s.id}/messages/batch`, {
      messages: Array.from({ length: 20 }, (_, i) => ({ role: 'user', content: `m${i}` })),
    });
    expect(batch.status).toBe(201);
    expect(await messagesOf(s.id)).toBe(20);

    const message = stack.services.get('message');
    if (!message) throw new Error('no message service');
    await stopService(message, 'SIGKILL');
    expect((await call('DELETE', `/api/v1/sessions/${s.id}`)).status).toBe(204);
    await new Promise((r) => setTimeout(r, 1000));
    expect(await messagesOf(s.id)).toBe(20);

    await restart('message');
    // At once, before its consumer has caught up: the copy still holds the session, but the
    // restarted service does not decide from it yet (decision 0023).
    const late = await call('POST', `/api/v1/sessions/${s.id}/messages`, { role: 'user', content: 'too late' });
    expect(late.status).toBe(404);
    await until(async () => (await messagesOf(s.id)) === 0);
  });

  it('relays a delete committed just before the session service is killed', async () => {
    const s = (await call('POST', '/api/v1/sessions', { title: 'doomed too' })).body;
    await call('POST', `/api/v1/sessions/${s.id}/messages`, { role: 'user', content: 'still here' });
    expect(await messagesOf(s.id)).toBe(1);
    const session = stack.services.get('session');
    if (!session) throw new Error('no session service');
    // The delete commits (session row and outbox row together); the process dies right after answering.
    expect((await call('DELETE', `/api/v1/sessions/${s.id}`)).status).toBe(204);
    await stopService(session, 'SIGKILL');
    await restart('session');
    await until(async () => (await messagesOf(s.id)) === 0);
    const pending = await count(`select count(*)::int as n from "${id}_session".outbox where published_at is null`, []);
    expect(pending).toBe(0);
  });
});
