import { randomBytes } from 'node:crypto';
import type { ReceivedSpan } from '../support/otlp-receiver';
import { adminLogin, api, eventually } from '../support/http';

async function spansOf(traceId: string): Promise<ReceivedSpan[]> {
  const res = await fetch(`${process.env.E2E_OTLP_URL}/spans`);
  return ((await res.json()) as ReceivedSpan[]).filter((s) => s.traceId === traceId);
}

const isSql = (s: ReceivedSpan) =>
  s.attributes['db.system'] === 'postgresql' || s.attributes['db.system.name'] === 'postgresql';

describe('tracing (e2e)', () => {
  it('follows one request from the gateway over NATS to the session service and its SQL', async () => {
    const token = await adminLogin();
    const created = await api('POST', '/api/v1/sessions', { token, body: { title: 'traced' } });
    expect(created.status).toBe(201);

    const traceId = randomBytes(16).toString('hex');
    const res = await api('GET', `/api/v1/sessions/${created.body.id}`, {
      token,
      headers: { traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` },
    });
    expect(res.status).toBe(200);

    const spans = await eventually(async () => {
      const found = await spansOf(traceId);
      const complete =
        found.some((s) => s.service === 'parley-gateway' && s.name === 'session.sessions.get request') &&
        found.some((s) => s.service === 'parley-session' && s.name === 'session.sessions.get process') &&
        found.some((s) => s.service === 'parley-session' && isSql(s) && s.name.startsWith('pg.query'));
      return complete ? found : undefined;
    }, 20_000).catch(async (error: unknown) => {
      const found = await spansOf(traceId);
      throw new Error(`${String(error)}; spans of the trace: ${JSON.stringify(found.map((s) => [s.service, s.name]))}`);
    });

    const byId = new Map(spans.map((s) => [s.spanId, s]));
    const server = spans.find((s) => s.service === 'parley-gateway' && s.kind === 2);
    expect(server).toBeDefined();
    const sql = spans.find((s) => s.service === 'parley-session' && isSql(s) && s.name.startsWith('pg.query'));
    // The SQL span descends from the gateway's HTTP span through the NATS hop.
    const chain: string[] = [];
    let cursor: ReceivedSpan | undefined = sql;
    while (cursor) {
      chain.push(`${cursor.service}:${cursor.name}`);
      cursor = cursor.parentSpanId ? byId.get(cursor.parentSpanId) : undefined;
    }
    expect(chain).toEqual(
      expect.arrayContaining([
        'parley-session:session.sessions.get process',
        'parley-gateway:session.sessions.get request',
      ]),
    );
    expect(chain.at(-1)?.startsWith('parley-gateway:')).toBe(true);
    // Fastify's request and route-handler spans belong to the same trace.
    expect(
      spans.some((s) => s.service === 'parley-gateway' && s.name === 'request' && 'fastify.root' in s.attributes),
    ).toBe(true);
    expect(spans.some((s) => s.service === 'parley-gateway' && s.name.startsWith('handler - '))).toBe(true);
  });

  it('follows a usage event from the gateway through JetStream to the usage service and its SQL', async () => {
    const token = await adminLogin();
    const bot = (await api('POST', '/api/v1/bots', { token, body: { name: 'traced-bot' } })).body;
    const traceId = randomBytes(16).toString('hex');
    const res = await api('POST', '/api/v1/usage/events', {
      headers: { 'x-api-key': bot.api_key, traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` },
      body: {
        request_id: 'traced-1',
        bot_id: bot.id,
        status: 'completed',
        input_tokens: 1,
        started_at: new Date(Date.now() - 1000).toISOString(),
      },
    });
    expect(res.status).toBe(202);

    const spans = await eventually(async () => {
      const found = await spansOf(traceId);
      const complete =
        found.some((s) => s.service === 'parley-gateway' && s.name === 'usage.events publish') &&
        found.some((s) => s.service === 'parley-usage' && s.name === 'usage.events.* process') &&
        found.some((s) => s.service === 'parley-usage' && isSql(s));
      return complete ? found : undefined;
    }, 20_000).catch(async (error: unknown) => {
      const found = await spansOf(traceId);
      throw new Error(`${String(error)}; spans of the trace: ${JSON.stringify(found.map((s) => [s.service, s.name]))}`);
    });
    const byId = new Map(spans.map((s) => [s.spanId, s]));
    const chain: string[] = [];
    let cursor: ReceivedSpan | undefined = spans.find((s) => s.service === 'parley-usage' && isSql(s));
    while (cursor) {
      chain.push(`${cursor.service}:${cursor.name}`);
      cursor = cursor.parentSpanId ? byId.get(cursor.parentSpanId) : undefined;
    }
    expect(chain).toEqual(
      expect.arrayContaining(['parley-usage:usage.events.* process', 'parley-gateway:usage.events publish']),
    );
  });
});
