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
 * The message service decides the owner's appends and reads from its copy of each session's
 * scope (decision 0023). Once a change of the session's status or its deletion has returned,
 * the very next request through either of two message-service instances must see it, while
 * the events that carry the change may still be on their way. On a stack of its own, with a
 * second message service.
 */
describe('session changes seen by the next append (e2e)', () => {
  const id = runId('chg');
  const adminPassword = randomBytes(12).toString('base64url');
  let stack: Stack | undefined;
  let second: RunningService | undefined;
  let base = '';
  let token = '';

  const call = (method: string, path: string, body?: unknown, as = token) => callGateway(base, method, path, as, body);
  const append = (sessionId: string, content: string) =>
    call('POST', `/api/v1/sessions/${sessionId}/messages`, { role: 'user', content });

  /** A counter of the message services' /metrics, summed over both instances. */
  const counter = async (name: string, labels: string) => {
    let total = 0;
    for (const service of [stack?.services.get('message'), second]) {
      const text = await (await fetch(`http://127.0.0.1:${service?.port}/metrics`)).text();
      for (const line of text.split('\n')) {
        if (line.startsWith(`${name}{`) && line.includes(labels)) total += Number(line.split(' ').at(-1));
      }
    }
    return total;
  };

  beforeAll(async () => {
    stack = await startStack(id, {
      PARLEY_ADMIN_USERNAME: 'admin',
      PARLEY_ADMIN_PASSWORD: adminPassword,
      LOG_LEVEL: 'warn',
      RATE_LIMIT_PER_MINUTE: '100000',
    });
    const logDir = join(ROOT, '.parley', 'test-logs', id, 'second');
    mkdirSync(logDir, { recursive: true });
    second = startService('message', { ...stack.env, MESSAGE_HTTP_PORT: String(await freePort()) }, logDir);
    await waitReady(second);
    base = `http://127.0.0.1:${stack.services.get('gateway')?.port}`;
    const admin = await fetch(`${base}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'admin', password: adminPassword }),
    });
    const adminToken = ((await admin.json()) as { access_token: string }).access_token;
    const password = 'correct-horse-battery';
    expect((await call('POST', '/api/v1/users', { username: 'owner', password }, adminToken)).status).toBe(201);
    const login = await fetch(`${base}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'owner', password }),
    });
    token = ((await login.json()) as { access_token: string }).access_token;
  }, 180_000);

  afterAll(async () => {
    if (second) await stopService(second);
    if (stack) await stopStack(stack);
    await cleanupRun(id);
  });

  it('refuses the append right after an archive or a delete returned, 200 times, and takes it after un-archiving', async () => {
    const wrong: string[] = [];
    const expectStatus = (what: string, got: number, want: number) => {
      if (got !== want) wrong.push(`${what}: ${got}, expected ${want}`);
    };
    for (let i = 0; i < 200; i++) {
      const session = await call('POST', '/api/v1/sessions', { title: `round ${i}` });
      expectStatus(`${i} create`, session.status, 201);
      const sessionId = session.body.id as string;
      for (let k = 0; k < 3; k++)
        expectStatus(`${i} append ${k}`, (await append(sessionId, `before ${k}`)).status, 201);

      expectStatus(
        `${i} archive`,
        (await call('PATCH', `/api/v1/sessions/${sessionId}`, { status: 'archived' })).status,
        200,
      );
      const refused = await append(sessionId, 'after archive');
      expectStatus(`${i} append after archive`, refused.status, 409);
      // Reading an archived session stays allowed.
      expectStatus(`${i} list archived`, (await call('GET', `/api/v1/sessions/${sessionId}/messages`)).status, 200);

      expectStatus(
        `${i} reopen`,
        (await call('PATCH', `/api/v1/sessions/${sessionId}`, { status: 'active' })).status,
        200,
      );
      const reopened = await append(sessionId, 'after reopen');
      expectStatus(`${i} append after reopen`, reopened.status, 201);
      if (reopened.status === 201 && reopened.body.seq !== 4) wrong.push(`${i} seq after reopen ${reopened.body.seq}`);

      expectStatus(`${i} delete`, (await call('DELETE', `/api/v1/sessions/${sessionId}`)).status, 204);
      expectStatus(`${i} append after delete`, (await append(sessionId, 'after delete')).status, 404);
      expectStatus(`${i} list after delete`, (await call('GET', `/api/v1/sessions/${sessionId}/messages`)).status, 404);
    }
    expect(wrong).toEqual([]);
  }, 240_000);

  it("decides the owner's appends and reads from the copy, without asking the session service", async () => {
    const session = await call('POST', '/api/v1/sessions', { title: 'by the copy' });
    // The copy comes from the created event, or from the session service's answer to the first append.
    expect((await append(session.body.id, 'first')).status).toBe(201);
    const appended = () => counter('parley_nats_requests_total', 'message.messages.append"');
    const listed = () => counter('parley_nats_requests_total', 'message.messages.list"');
    const asked = () => counter('parley_nats_client_requests_total', 'session.sessions.authorize"');
    const before = { appended: await appended(), listed: await listed(), asked: await asked() };
    for (let i = 0; i < 40; i++) {
      expect((await append(session.body.id, `message ${i}`)).status).toBe(201);
      expect((await call('GET', `/api/v1/sessions/${session.body.id}/messages?limit=5`)).status).toBe(200);
    }
    expect((await appended()) - before.appended).toBe(40);
    expect((await listed()) - before.listed).toBe(40);
    // The created event may still have been on its way for the first few.
    expect((await asked()) - before.asked).toBeLessThan(5);
  }, 60_000);
});
