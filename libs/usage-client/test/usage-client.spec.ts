import { randomUUID } from 'node:crypto';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, headers as natsHeaders, type NatsConnection } from '@nats-io/transport-node';
import { prefixed, prefixedStream, type Quota } from '@parley/contracts';
import { Nats, createLogger, ensureStream, type StreamSpec } from '@parley/kit';
import { ParleyRequestError, UsageClient, UsageClientClosedError, UsageReportError } from '../src';
import { NATS_URL, cleanupRun, runId } from '../../../test/support/stack';

const logger = createLogger('usage-client-test', 'silent');
const USAGE_SPEC: StreamSpec = {
  name: 'USAGE',
  subjects: ['usage.events.*', 'activity.events.*'],
  maxAgeMs: 3_600_000,
  duplicateWindowMs: 900_000,
};

const id = runId('ucl');
const stream = prefixedStream(id, 'USAGE');
const runs = [id];

function freshRun(): string {
  const run = runId('ucl');
  runs.push(run);
  return run;
}

const iso = (offsetMs = 0) => new Date(Date.now() + offsetMs).toISOString();

function usage(requestId: string, status: 'started' | 'completed' | 'failed' = 'completed') {
  return {
    request_id: requestId,
    status,
    channel: 'web',
    provider: 'openai',
    model: 'gpt-4o',
    input_tokens: 812,
    output_tokens: 96,
    started_at: iso(-2000),
    ...(status === 'started' ? {} : { completed_at: iso() }),
  };
}

describe('UsageClient against real NATS JetStream', () => {
  let nats: Nats;
  let jsm: JetStreamManager;
  let botNc: NatsConnection;
  const clients: UsageClient[] = [];
  const extraNats: Nats[] = [];

  /** Messages the USAGE stream of `streamName` holds on `subject`. */
  async function storedOn(subject: string, streamName = stream): Promise<number> {
    const info = await jsm.streams.info(streamName, { subjects_filter: subject });
    return info.state.subjects?.[subject] ?? 0;
  }

  async function clientFor(botId: string, extra: Partial<ConstructorParameters<typeof UsageClient>[1]> = {}) {
    const client = await UsageClient.connect(NATS_URL, { botId, subjectPrefix: id, ...extra });
    clients.push(client);
    return client;
  }

  beforeAll(async () => {
    nats = await Nats.connect({ url: NATS_URL, prefix: id, name: 'usage-client-test', logger });
    jsm = await jetstreamManager(nats.connection);
    await ensureStream(nats, USAGE_SPEC, jsm);
    botNc = await connect({ servers: NATS_URL, name: 'usage-client-test-bot' });
  });

  afterAll(async () => {
    for (const client of clients) await client.close();
    for (const n of extraNats) await n.close();
    await botNc.close();
    await nats.close();
    for (const run of runs) await cleanupRun(run);
  });

  it('publishes a usage report on the bot subject with its Nats-Msg-Id and the validated JSON', async () => {
    const botId = randomUUID();
    const client = await clientFor(botId);
    const receipt = await client.reportUsage(usage('r-1'));
    expect(receipt.duplicate).toBe(false);
    expect(receipt.seq).toBeGreaterThan(0);

    const subject = prefixed(id, `usage.events.${botId}`);
    const stored = await jsm.streams.getMessage(stream, { last_by_subj: subject });
    expect(stored).not.toBeNull();
    expect(stored!.seq).toBe(receipt.seq);
    expect(stored!.subject).toBe(subject);
    expect(stored!.header.get('Nats-Msg-Id')).toBe(`${botId}:r-1:completed`);
    const body = stored!.json<Record<string, unknown>>();
    expect(body).toMatchObject({
      request_id: 'r-1',
      bot_id: botId,
      status: 'completed',
      model: 'gpt-4o',
      input_tokens: 812,
      output_tokens: 96,
    });
    expect(body).not.toHaveProperty('envelope');
    expect(client.pending).toBe(0);
  });

  it('accepts bot_id when it is the client bot, and stores the same event once', async () => {
    const botId = randomUUID();
    const client = await clientFor(botId);
    const event = { ...usage('r-dup', 'started'), bot_id: botId };
    const first = await client.reportUsage(event);
    const second = await client.reportUsage(event);
    expect(first.duplicate).toBe(false);
    expect(second.duplicate).toBe(true);
    expect(second.seq).toBe(first.seq);
    expect(await storedOn(prefixed(id, `usage.events.${botId}`))).toBe(1);

    // started and completed of one request are two events.
    const completed = await client.reportUsage(usage('r-dup', 'completed'));
    expect(completed.duplicate).toBe(false);
    expect(await storedOn(prefixed(id, `usage.events.${botId}`))).toBe(2);
  });

  it('refuses invalid reports locally, naming the field, and publishes nothing', async () => {
    const botId = randomUUID();
    const client = await clientFor(botId);
    const before = (await jsm.streams.info(stream)).state.messages;

    const fieldsOf = async (promise: Promise<unknown>) => {
      const error: unknown = await promise.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(UsageReportError);
      return (error as UsageReportError).errors.map((e) => e.field);
    };

    expect(await fieldsOf(client.reportUsage({ ...usage('r-neg'), input_tokens: -5 }))).toEqual(['input_tokens']);
    expect(
      await fieldsOf(client.reportUsage({ ...usage('r-future', 'started'), started_at: iso(2 * 3600_000) })),
    ).toEqual(['started_at']);
    expect(await fieldsOf(client.reportUsage({ ...usage('r-other'), bot_id: randomUUID() }))).toEqual(['bot_id']);
    expect(
      await fieldsOf(client.reportActivity({ event_id: 'e-1', event_type: 'has space', occurred_at: iso() })),
    ).toEqual(['event_type']);
    // An unknown field is refused too (the contract is strict).
    expect(await fieldsOf(client.reportUsage({ ...usage('r-extra'), cost: 1 } as never))).toEqual(['cost']);

    expect(client.pending).toBe(0);
    expect(await storedOn(prefixed(id, `usage.events.${botId}`))).toBe(0);
    expect(await storedOn(prefixed(id, `activity.events.${botId}`))).toBe(0);
    expect((await jsm.streams.info(stream)).state.messages).toBe(before);
  });

  it('retries with the same Nats-Msg-Id until the stream exists, and stores the report once', async () => {
    const run = freshRun();
    const botId = randomUUID();
    const client = await UsageClient.connect(NATS_URL, { botId, subjectPrefix: run });
    clients.push(client);

    let settled = false;
    const report = client.reportUsage(usage('r-early')).finally(() => {
      settled = true;
    });
    await new Promise((r) => setTimeout(r, 1000));
    expect(settled).toBe(false);
    expect(client.pending).toBe(1);

    const late = await Nats.connect({ url: NATS_URL, prefix: run, name: 'usage-client-test-late', logger });
    extraNats.push(late);
    await ensureStream(late, USAGE_SPEC, jsm);
    const receipt = await report;
    expect(receipt.duplicate).toBe(false);

    const lateStream = prefixedStream(run, 'USAGE');
    const subject = prefixed(run, `usage.events.${botId}`);
    expect(await storedOn(subject, lateStream)).toBe(1);
    const stored = await jsm.streams.getMessage(lateStream, { last_by_subj: subject });
    expect(stored!.header.get('Nats-Msg-Id')).toBe(`${botId}:r-early:completed`);
    expect(client.pending).toBe(0);
  });

  it('gives up after retryHorizonMs with the last error', async () => {
    const client = await UsageClient.connect(NATS_URL, {
      botId: randomUUID(),
      subjectPrefix: freshRun(),
      retryHorizonMs: 400,
    });
    clients.push(client);
    const started = Date.now();
    const error: unknown = await client.reportUsage(usage('r-never')).then(
      () => undefined,
      (e: unknown) => e,
    );
    const elapsed = Date.now() - started;
    expect(error).toBeInstanceOf(Error);
    expect(String((error as Error).message)).toMatch(/no responders|not enabled/i);
    expect(elapsed).toBeGreaterThanOrEqual(400);
    expect(elapsed).toBeLessThan(2000);
    expect(client.pending).toBe(0);
  });

  it('does not retry what cannot succeed: a message larger than the stream accepts', async () => {
    const run = freshRun();
    const small = await Nats.connect({ url: NATS_URL, prefix: run, name: 'usage-client-test-small', logger });
    extraNats.push(small);
    await ensureStream(small, { ...USAGE_SPEC, maxMsgSize: 64 }, jsm);
    const client = await UsageClient.connect(NATS_URL, { botId: randomUUID(), subjectPrefix: run });
    clients.push(client);

    const started = Date.now();
    const error: unknown = await client.reportUsage(usage('r-big')).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).name).toBe('JetStreamApiError');
    expect(Date.now() - started).toBeLessThan(1000);
    expect((await jsm.streams.info(prefixedStream(run, 'USAGE'))).state.messages).toBe(0);
  });

  it('keeps at most maxPending publishes in flight and stores every report', async () => {
    const botId = randomUUID();
    const client = new UsageClient(botNc, { botId, subjectPrefix: id, maxPending: 4 });
    clients.push(client);
    const subject = prefixed(id, `usage.events.${botId}`);

    // A second connection watches the wire: each publish carries a reply inbox, and the ack comes back on it.
    const sniffer = await connect({ servers: NATS_URL, name: 'usage-client-test-sniffer' });
    const awaitingAck = new Set<string>();
    let sniffedMax = 0;
    let sniffedPublishes = 0;
    sniffer.subscribe(subject, {
      callback: (_err, msg) => {
        if (!msg.reply) return;
        sniffedPublishes++;
        awaitingAck.add(msg.reply);
        sniffedMax = Math.max(sniffedMax, awaitingAck.size);
      },
    });
    sniffer.subscribe('_INBOX.>', { callback: (_err, msg) => void awaitingAck.delete(msg.subject) });
    await sniffer.flush();

    let sampledMax = 0;
    let sampledOverPending = false;
    const sample = () => {
      sampledMax = Math.max(sampledMax, client.inFlight);
      if (client.inFlight > client.pending) sampledOverPending = true;
    };
    const timer = setInterval(sample, 1);

    try {
      const reports = Array.from({ length: 200 }, (_, i) => client.reportUsage(usage(`r-${i}`)));
      expect(client.pending).toBe(200);
      expect(client.inFlight).toBe(4);
      sample();
      const receipts = await Promise.all(reports);
      sample();
      await client.flush();
      // Everything the server routed to the sniffer before this round trip has arrived.
      await sniffer.flush();

      expect(receipts.every((r) => !r.duplicate)).toBe(true);
      expect(new Set(receipts.map((r) => r.seq)).size).toBe(200);
      // Published in the order of the calls: slots are handed out first come, first served.
      const seqs = receipts.map((r) => r.seq);
      expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    } finally {
      clearInterval(timer);
      await sniffer.close();
    }

    expect(sampledMax).toBe(4);
    expect(sampledOverPending).toBe(false);
    expect(sniffedPublishes).toBe(200);
    expect(sniffedMax).toBeGreaterThanOrEqual(2);
    expect(sniffedMax).toBeLessThanOrEqual(4);
    expect(client.pending).toBe(0);
    expect(client.inFlight).toBe(0);
    expect(await storedOn(subject)).toBe(200);

    // close() leaves a connection the bot owns open, and refuses later reports.
    await client.close();
    expect(botNc.isClosed()).toBe(false);
    await expect(client.reportUsage(usage('r-late'))).rejects.toBeInstanceOf(UsageClientClosedError);
  });

  it('reports activity with Nats-Msg-Id <bot>:<event_id>', async () => {
    const botId = randomUUID();
    const client = await clientFor(botId);
    const receipt = await client.reportActivity({
      event_id: 'ev-42',
      event_type: 'tool.call',
      request_id: 'r-9',
      detail: 'looked up the weather',
      metadata: { tool: 'weather', ok: true },
      occurred_at: iso(),
    });
    expect(receipt.duplicate).toBe(false);
    const subject = prefixed(id, `activity.events.${botId}`);
    const stored = await jsm.streams.getMessage(stream, { last_by_subj: subject });
    expect(stored!.seq).toBe(receipt.seq);
    expect(stored!.header.get('Nats-Msg-Id')).toBe(`${botId}:ev-42`);
    expect(stored!.json()).toMatchObject({ event_id: 'ev-42', bot_id: botId, metadata: { tool: 'weather', ok: true } });
  });

  describe('checkQuota', () => {
    const knownBot = randomUUID();
    const quota: Quota = {
      bot_id: knownBot,
      period: 'day',
      period_start: '2026-11-23T00:00:00.000Z',
      used_tokens: 908,
      used_cost: '0.0123',
      max_tokens: 100_000,
      max_cost: null,
      remaining_tokens: 99_092,
      remaining_cost: null,
      currency: 'USD',
      exceeded: false,
    };
    const requests: unknown[] = [];

    beforeAll(async () => {
      botNc.subscribe(prefixed(id, 'usage.quota.check'), {
        callback: (_err, msg) => {
          const request = msg.json<{ bot_id: string }>();
          requests.push(request);
          if (request.bot_id === knownBot) {
            msg.respond(JSON.stringify(quota));
            return;
          }
          const h = natsHeaders();
          h.set('Parley-Error', 'NOT_FOUND');
          msg.respond(JSON.stringify({ code: 'NOT_FOUND', status: 404, detail: 'no such bot', retryable: false }), {
            headers: h,
          });
        },
      });
      await botNc.flush();
    });

    it('answers the quota object', async () => {
      const client = await clientFor(knownBot);
      await expect(client.checkQuota()).resolves.toEqual(quota);
      expect(requests.at(-1)).toEqual({ bot_id: knownBot });
    });

    it('turns an error reply into ParleyRequestError', async () => {
      const client = await clientFor(randomUUID());
      const error: unknown = await client.checkQuota().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(ParleyRequestError);
      expect(error).toMatchObject({ code: 'NOT_FOUND', status: 404, retryable: false, message: 'no such bot' });
    });

    it('reports no responder as a retryable UPSTREAM_UNAVAILABLE', async () => {
      const client = await UsageClient.connect(NATS_URL, { botId: knownBot, subjectPrefix: freshRun() });
      clients.push(client);
      await expect(client.checkQuota()).rejects.toMatchObject({
        name: 'ParleyRequestError',
        code: 'UPSTREAM_UNAVAILABLE',
        retryable: true,
      });
    });
  });
});
