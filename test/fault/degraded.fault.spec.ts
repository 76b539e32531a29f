import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { DATABASE_URL, cleanupRun, runId, startStack, stopStack, type Stack } from '../support/stack';
import { startOwnRedis, type OwnRedis } from '../support/redis';

/**
 * A stack on a Redis of its own, which the test freezes (SIGSTOP: connections stay open, nothing
 * answers), and a usage service whose statements may run 300 ms on the request path.
 */
describe('bounded work when a dependency is slow (fault)', () => {
  const id = runId('dgr');
  const password = randomBytes(12).toString('base64url');
  let redis: OwnRedis;
  let stack: Stack;
  let gateway: string;
  let token: string;

  const call = async (method: string, path: string, body?: unknown, auth = token) => {
    const res = await fetch(`${gateway}${path}`, {
      method,
      headers: { authorization: `Bearer ${auth}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
      signal: AbortSignal.timeout(30_000),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  };
  const login = async () => {
    const res = await fetch(`${gateway}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'admin', password }),
      signal: AbortSignal.timeout(30_000),
    });
    expect(res.status).toBe(200);
    return ((await res.json()) as { access_token: string }).access_token;
  };

  beforeAll(async () => {
    redis = await startOwnRedis();
    stack = await startStack(
      id,
      { PARLEY_ADMIN_USERNAME: 'admin', PARLEY_ADMIN_PASSWORD: password, LOG_LEVEL: 'warn', REDIS_URL: redis.url },
      { usage: { DATABASE_STATEMENT_TIMEOUT_MS: '300' } },
    );
    gateway = `http://127.0.0.1:${stack.services.get('gateway')?.port}`;
    token = await login();
  });

  afterAll(async () => {
    redis?.resume();
    if (stack) await stopStack(stack);
    await redis?.stop();
    await cleanupRun(id);
  });

  it('answers 503 QUERY_TIMEOUT, retryable, for a query past statement_timeout, not a hang', async () => {
    const pg = new Client({ connectionString: DATABASE_URL });
    await pg.connect();
    try {
      // The summary's query waits for this lock longer than the usage service's 300 ms.
      await pg.query('begin');
      await pg.query(`lock table "${id}_usage".usage_records in access exclusive mode`);
      const timedOut = await call('GET', '/api/v1/usage/summary?group_by=model');
      expect(timedOut.status).toBe(503);
      expect(timedOut.body).toMatchObject({ code: 'QUERY_TIMEOUT', status: 503, retryable: true });
      await pg.query('rollback');
      const answered = await call('GET', '/api/v1/usage/summary?group_by=model');
      expect(answered.status).toBe(200);
    } finally {
      await pg.end();
    }
  });

  it('keeps answering requests while Redis does not answer', async () => {
    redis.pause();
    try {
      const fresh = await login();
      expect((await call('GET', '/api/v1/me', undefined, fresh)).status).toBe(200);
      const session = await call('POST', '/api/v1/sessions', { title: 'while Redis sleeps' });
      expect(session.status).toBe(201);
      const appended = await call('POST', `/api/v1/sessions/${session.body.id}/messages`, {
        role: 'user',
        content: 'hello',
      });
      expect(appended.status).toBe(201);
      expect((await call('GET', `/api/v1/sessions/${session.body.id}`)).status).toBe(200);
      const listed = await call('GET', `/api/v1/sessions/${session.body.id}/messages`);
      expect(listed.body.items.map((m: { content: string }) => m.content)).toEqual(['hello']);
      expect((await call('GET', '/api/v1/usage/summary')).status).toBe(200);

      // A live stream opens: its place is counted in this gateway's memory.
      const stream = await fetch(`${gateway}/api/v1/sessions/${session.body.id}/stream?access_token=${token}`, {
        signal: AbortSignal.timeout(30_000),
      });
      expect(stream.status).toBe(200);
      await stream.body?.cancel();

      // Ready, with Redis named as degraded.
      const ready = await fetch(`${gateway}/readyz`, { signal: AbortSignal.timeout(30_000) });
      expect(ready.status).toBe(200);
      expect(((await ready.json()) as { checks: Record<string, { ok: boolean }> }).checks.redis.ok).toBe(false);
    } finally {
      redis.resume();
    }
  });
});
