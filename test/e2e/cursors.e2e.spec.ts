import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  ROOT,
  cleanupRun,
  freePort,
  runId,
  startService,
  startStack,
  stopService,
  stopStack,
  waitReady,
  type RunningService,
  type Stack,
} from '../support/stack';
import { callGateway } from '../support/http';

/**
 * Cursors are signed by the service that makes the list, with a key kept in its schema: a
 * cursor handed out through one gateway and one instance of the service is read through
 * another gateway by another instance, and again after every process has restarted. On a
 * stack of its own, since it stops and starts services.
 */
describe('list cursors across instances and restarts (e2e)', () => {
  const id = runId('cur');
  const adminPassword = randomBytes(12).toString('base64url');
  let stack: Stack | undefined;
  const extra: RunningService[] = [];

  const call = callGateway;
  const gatewayOf = (s: Stack) => `http://127.0.0.1:${s.services.get('gateway')?.port}`;
  const adminToken = async (base: string) => {
    const res = await call(base, 'POST', '/api/v1/auth/login', undefined, {
      username: 'admin',
      password: adminPassword,
    });
    expect(res.status).toBe(200);
    return res.body.access_token as string;
  };
  const start = () =>
    startStack(id, { PARLEY_ADMIN_USERNAME: 'admin', PARLEY_ADMIN_PASSWORD: adminPassword, LOG_LEVEL: 'warn' });
  const another = async (name: 'gateway' | 'session' | 'message', portVar: string) => {
    const logDir = join(ROOT, '.parley', 'test-logs', id, 'second');
    mkdirSync(logDir, { recursive: true });
    const service = startService(name, { ...stack?.env, [portVar]: String(await freePort()) }, logDir);
    extra.push(service);
    await waitReady(service);
    return service;
  };

  beforeAll(async () => {
    stack = await start();
  }, 180_000);

  afterAll(async () => {
    for (const service of extra) await stopService(service);
    if (stack) await stopStack(stack);
    await cleanupRun(id);
  });

  it('reads on with a cursor from another gateway and service instance, and after a restart', async () => {
    const first = gatewayOf(stack as Stack);
    let token = await adminToken(first);
    for (let i = 1; i <= 5; i++) {
      expect((await call(first, 'POST', '/api/v1/sessions', token, { title: `walk ${i}` })).status).toBe(201);
    }
    const conversation = (await call(first, 'POST', '/api/v1/sessions', token, { title: 'talk' })).body.id as string;
    for (let i = 1; i <= 5; i++) {
      const appended = await call(first, 'POST', `/api/v1/sessions/${conversation}/messages`, token, {
        role: 'user',
        content: `line ${i}`,
      });
      expect(appended.status).toBe(201);
    }
    const sessionsPath = '/api/v1/sessions?limit=2';
    const messagesPath = `/api/v1/sessions/${conversation}/messages?limit=2`;
    const whole = {
      sessions: (await call(first, 'GET', '/api/v1/sessions?limit=50', token)).body.items.map((s: any) => s.id),
      messages: (await call(first, 'GET', `${messagesPath.replace('limit=2', 'limit=50')}`, token)).body.items.map(
        (m: any) => m.seq,
      ),
    };
    const pageOne = {
      sessions: (await call(first, 'GET', sessionsPath, token)).body,
      messages: (await call(first, 'GET', messagesPath, token)).body,
    };
    expect(pageOne.sessions.next_cursor).toEqual(expect.any(String));
    expect(pageOne.messages.next_cursor).toEqual(expect.any(String));
    const readOn = async (base: string) => ({
      sessions: await call(base, 'GET', `${sessionsPath}&cursor=${pageOne.sessions.next_cursor}`, token),
      messages: await call(base, 'GET', `${messagesPath}&cursor=${pageOne.messages.next_cursor}`, token),
    });
    const expectPageTwo = (pages: Awaited<ReturnType<typeof readOn>>) => {
      expect(pages.sessions.status).toBe(200);
      expect(pages.sessions.body.items.map((s: any) => s.id)).toEqual(whole.sessions.slice(2, 4));
      expect(pages.messages.status).toBe(200);
      expect(pages.messages.body.items.map((m: any) => m.seq)).toEqual([3, 4]);
    };

    // A second gateway, session and message service; then the first session and message
    // services stop, so the second instances answer.
    const gateway = await another('gateway', 'GATEWAY_PORT');
    await another('session', 'SESSION_HTTP_PORT');
    await another('message', 'MESSAGE_HTTP_PORT');
    for (const name of ['session', 'message'] as const) {
      const original = stack?.services.get(name);
      if (original) await stopService(original);
    }
    expectPageTwo(await readOn(`http://127.0.0.1:${gateway.port}`));

    // Every process stops and starts again.
    for (const service of extra.splice(0)) await stopService(service);
    await stopStack(stack as Stack);
    stack = await start();
    const restarted = gatewayOf(stack);
    token = await adminToken(restarted);
    expectPageTwo(await readOn(restarted));
    expect(whole.messages).toEqual([1, 2, 3, 4, 5]);
  });
});
