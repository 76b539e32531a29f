import { connect, type NatsConnection } from '@nats-io/transport-node';
import { z } from 'zod';
import { ParleyError, rpc } from '@parley/contracts';
import { Metrics, Nats, Readiness, RpcClient, type Logger } from '../src';
import { runId } from '../../../test/support/stack';
import { startOwnNats, type OwnInfrastructure } from '../../../test/support/infra';

const Silent = rpc('test.silent', z.object({}), z.object({ ok: z.boolean() }));

/** A NATS server of the test's own, killed with SIGKILL under a request that waits for its answer. */
describe('RpcClient when the NATS connection is lost', () => {
  const id = runId('nls');
  let server: OwnInfrastructure;
  let nats: Nats;
  let responder: NatsConnection;
  let answering = false;
  let received = 0;
  const warnings: string[] = [];
  const logger = {
    warn: (fields: { nats_status?: string }) => warnings.push(String(fields.nats_status)),
  } as unknown as Logger;

  beforeAll(async () => {
    server = await startOwnNats();
    nats = await Nats.connect({ url: server.url, prefix: id, name: 'kit-test', logger });
    // A service that holds on to every request until told to answer.
    responder = await connect({ servers: server.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    responder.subscribe(nats.subject(Silent.subject), {
      callback: (_err, msg) => {
        received += 1;
        if (answering) msg.respond(JSON.stringify({ ok: true }));
      },
    });
    await responder.flush();
  });

  afterAll(async () => {
    await responder?.close().catch(() => undefined);
    await nats?.close().catch(() => undefined);
    await server?.stop();
  });

  const failure = async (work: Promise<unknown>) => {
    const started = Date.now();
    try {
      await work;
      return { ms: Date.now() - started };
    } catch (error) {
      return {
        ms: Date.now() - started,
        code: error instanceof ParleyError ? error.code : String(error),
        retryable: error instanceof ParleyError ? error.retryable : undefined,
      };
    }
  };

  it('rejects a pending call when the connection drops, refuses calls while away, and works once back', async () => {
    const client = new RpcClient(nats, 30_000, new Metrics('kit-test'));
    const readiness = new Readiness(nats, undefined, undefined);
    const pending = failure(client.call(Silent, {}));
    for (const deadline = Date.now() + 10_000; received === 0;) {
      if (Date.now() > deadline) throw new Error('the request did not arrive');
      await new Promise((r) => setTimeout(r, 20));
    }
    await server.kill();
    // Rejected when the connection drops, long before the call's 30 s timeout.
    const dropped = await pending;
    expect(dropped).toMatchObject({ code: 'UPSTREAM_UNAVAILABLE', retryable: true });
    expect(dropped.ms).toBeLessThan(2500);

    // Away: refused at once, and /readyz says so without waiting for its own timeout.
    const refused = await failure(client.call(Silent, {}));
    expect(refused).toMatchObject({ code: 'UPSTREAM_UNAVAILABLE', retryable: true });
    expect(refused.ms).toBeLessThan(1000);
    const report = await readiness.report();
    expect(report.ready).toBe(false);
    expect(report.checks.nats).toEqual({ ok: false, detail: 'disconnected; reconnecting' });

    answering = true;
    await server.restart();
    const deadline = Date.now() + 30_000;
    for (;;) {
      const answer = await failure(client.call(Silent, {}, { timeoutMs: 2000 }));
      if (answer.code === undefined) break;
      expect(answer).toMatchObject({ code: 'UPSTREAM_UNAVAILABLE', retryable: true });
      if (Date.now() > deadline) throw new Error('no answer after NATS came back');
      await new Promise((r) => setTimeout(r, 100));
    }
    expect((await readiness.report()).checks.nats).toEqual({ ok: true });
    expect(warnings).toEqual(expect.arrayContaining(['disconnect', 'reconnect']));
  });
});
