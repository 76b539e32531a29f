import { randomBytes } from 'node:crypto';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { NATS_URL, cleanupRun, runId, startStack, stopStack, type Stack } from '../support/stack';
import { callGateway } from '../support/http';

/**
 * Without an OTLP endpoint no span is recorded, yet a request's trace id still comes from its
 * `traceparent` and travels over NATS (the services' spans are only ids then). On a stack of
 * its own: the shared one exports to a receiver.
 */
describe('trace ids without an exporter (e2e)', () => {
  const id = runId('tid');
  const password = randomBytes(12).toString('base64url');
  let stack: Stack | undefined;
  let nc: NatsConnection | undefined;

  beforeAll(async () => {
    stack = await startStack(id, {
      PARLEY_ADMIN_USERNAME: 'admin',
      PARLEY_ADMIN_PASSWORD: password,
      LOG_LEVEL: 'warn',
    });
    nc = await connect({ servers: NATS_URL });
  }, 180_000);

  afterAll(async () => {
    await nc?.close();
    if (stack) await stopStack(stack);
    await cleanupRun(id);
  });

  it("carries the caller's trace id from the gateway to the message service, or a new one", async () => {
    const base = `http://127.0.0.1:${stack?.services.get('gateway')?.port}`;
    const login = await callGateway(base, 'POST', '/api/v1/auth/login', undefined, { username: 'admin', password });
    const token = login.body.access_token as string;
    const session = (await callGateway(base, 'POST', '/api/v1/sessions', token, { title: 'ids' })).body.id as string;

    // A plain subscriber beside the service's queue group sees every request on the subject.
    const seen: string[] = [];
    const sub = nc?.subscribe(`${id}.message.messages.list`, {
      callback: (_error, msg) => {
        seen.push(msg.headers?.get('traceparent') ?? '');
      },
    });
    await nc?.flush();
    const traceId = randomBytes(16).toString('hex');
    const traced = await fetch(`${base}/api/v1/sessions/${session}/messages`, {
      headers: { authorization: `Bearer ${token}`, traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-00` },
    });
    expect(traced.status).toBe(200);
    const untraced = await callGateway(base, 'GET', `/api/v1/sessions/${session}/messages`, token);
    expect(untraced.status).toBe(200);
    await nc?.flush();
    sub?.unsubscribe();

    expect(seen).toHaveLength(2);
    expect(seen[0]).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-00$`));
    // A request without traceparent starts a trace of its own.
    expect(seen[1]).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
    expect(seen[1].slice(3, 35)).not.toBe(traceId);
  });
});
