import { randomUUID } from 'node:crypto';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, credsAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import type { Quota } from '@parley/contracts';
import { CredentialsError, UsageClient, type Receipt } from '../src';
import {
  connectedUsers,
  startFakeGateway,
  startOperatorNats,
  type FakeGateway,
  type OperatorNats,
} from './support/operator-nats';

/** Bot credentials live this long (whole seconds in the JWT, so 2 to 3 s from when they arrive). */
const TTL_SECONDS = 3;
const PREFIX_WITHOUT_STREAM = 'nostream';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

function usage(requestId: string) {
  const now = new Date().toISOString();
  return {
    request_id: requestId,
    status: 'completed' as const,
    provider: 'openai',
    model: 'gpt-4o',
    input_tokens: 10,
    output_tokens: 5,
    started_at: now,
    completed_at: now,
  };
}

describe('UsageClient with NATS credentials from the gateway (operator-mode NATS)', () => {
  let nats: OperatorNats;
  let service: NatsConnection;
  let jsm: JetStreamManager;
  let gateway: FakeGateway;
  let gatewayWithoutStream: FakeGateway;
  const bots = new Map<string, string>();
  const clients: UsageClient[] = [];

  const newBot = () => {
    const botId = randomUUID();
    bots.set(botId, `pk_${randomUUID()}`);
    return botId;
  };

  async function clientFor(botId: string, errors: Error[], via = gateway, subjectPrefix = '', renewAfter?: number) {
    const client = await UsageClient.connect(nats.url, {
      botId,
      subjectPrefix,
      credentials: { gatewayUrl: via.url, apiKey: bots.get(botId)!, ttlSeconds: 60, renewAfter },
      publishTimeoutMs: 1000,
      connect: { reconnectTimeWait: 100, reconnectJitter: 0 },
      onError: (error) => errors.push(error),
    });
    clients.push(client);
    return client;
  }

  /** The stored Nats-Msg-Ids on a subject, in stream order. */
  async function storedIds(subject: string): Promise<string[]> {
    const info = await jsm.streams.info('USAGE');
    const ids: string[] = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
      const m = await jsm.streams.getMessage('USAGE', { seq });
      if (m?.subject === subject) ids.push(m.header.get('Nats-Msg-Id'));
    }
    return ids;
  }

  beforeAll(async () => {
    nats = await startOperatorNats();
    service = await connect({
      servers: nats.url,
      authenticator: credsAuthenticator(new TextEncoder().encode(nats.serviceCreds)),
      name: 'usage-client-test-service',
    });
    jsm = await jetstreamManager(service);
    await jsm.streams.add({
      name: 'USAGE',
      subjects: ['usage.events.*', 'activity.events.*'],
      duplicate_window: 120 * 1e9,
    });
    gateway = await startFakeGateway(nats, bots, { ttlSeconds: TTL_SECONDS });
    gatewayWithoutStream = await startFakeGateway(nats, bots, {
      ttlSeconds: TTL_SECONDS,
      prefix: PREFIX_WITHOUT_STREAM,
    });
  });

  afterAll(async () => {
    for (const client of clients) await client.close();
    await service?.close();
    await gateway?.close();
    await gatewayWithoutStream?.close();
    await nats?.stop();
  });

  it('reports across several expiries: renews, reconnects with the new credentials, stores every report once', async () => {
    const botId = newBot();
    const quota: Quota = {
      bot_id: botId,
      period: 'day',
      period_start: '2026-11-23T00:00:00.000Z',
      used_tokens: 15,
      used_cost: '0.0001',
      max_tokens: null,
      max_cost: null,
      remaining_tokens: null,
      remaining_cost: null,
      currency: 'USD',
      exceeded: false,
    };
    service.subscribe('usage.quota.check', {
      callback: (_e, msg) => {
        msg.respond(JSON.stringify(quota));
      },
    });

    const errors: Error[] = [];
    // Renewing at half of a 2-3 s life leaves room for a slow answer of the test gateway on a busy machine.
    const client = await clientFor(botId, errors, gateway, '', 0.5);
    expect(client.credentials).toMatchObject({
      inboxPrefix: `_INBOX_${botId}`,
      publish: [`usage.events.${botId}`, `activity.events.${botId}`, 'usage.quota.check'],
      subscribe: [`_INBOX_${botId}.>`],
    });
    expect(gateway.calls[0]).toMatchObject({ botId, status: 201, ttl: 60 });
    let reconnects = 0;
    let switches = 0;
    void (async () => {
      for await (const s of client.connection.status()) {
        if (s.type === 'reconnect') reconnects++;
        if (s.type === 'forceReconnect') switches++;
      }
    })();

    // Report for a bit more than two lifetimes, one report every 40 ms, without waiting for acks.
    const reports: Promise<Receipt>[] = [];
    const ids: string[] = [];
    const started = Date.now();
    let quotas = 0;
    while (Date.now() - started < 2 * TTL_SECONDS * 1000 + 500) {
      const requestId = `r-${ids.length}`;
      ids.push(requestId);
      reports.push(client.reportUsage(usage(requestId)));
      if (ids.length % 25 === 0) {
        await expect(client.checkQuota()).resolves.toEqual(quota);
        quotas++;
      }
      await sleep(40);
    }
    const receipts = await Promise.all(reports);
    await client.flush();

    // Every report was acknowledged at its own stream sequence, and the stream holds each once.
    expect(new Set(receipts.map((r) => r.seq)).size).toBe(ids.length);
    const stored = await storedIds(`usage.events.${botId}`);
    expect(stored).toHaveLength(ids.length);
    expect(new Set(stored)).toEqual(new Set(ids.map((id) => `${botId}:${id}:completed`)));
    expect(quotas).toBeGreaterThanOrEqual(2);

    // Renewed at least once per lifetime, and switched the connection to each new user.
    expect(gateway.calls.filter((c) => c.botId === botId && c.status === 201).length).toBeGreaterThanOrEqual(4);
    expect(reconnects).toBeGreaterThanOrEqual(3);
    expect(switches).toBeGreaterThanOrEqual(2);
    await until('the connection to use the newest user', async () => {
      const users = await connectedUsers(nats.monitorUrl);
      const mine = users.filter((u) => u.name === `parley-usage-client:${botId}`);
      return mine.length === 1 && mine[0].user === client.credentials?.publicKey;
    });
    expect(gateway.issued.map((c) => c.publicKey)).toContain(client.credentials?.publicKey);
    // Never asked for anything a bot may not do. (A renewal answered late on a busy machine may let the
    // server cut the expired user off before the switch; the client then reconnects as the next test shows.)
    expect(errors.filter((e) => e.name !== 'UserAuthenticationExpiredError')).toEqual([]);
    expect(nats.log()).not.toMatch(/Permissions Violation/i);
    await client.close();
    expect(client.connection.isClosed()).toBe(true);
  });

  it('is cut off when a renewal comes too late, then reconnects with the renewed credentials and loses nothing', async () => {
    const botId = newBot();
    const errors: Error[] = [];
    const client = await clientFor(botId, errors);
    const firstKey = client.credentials!.publicKey;
    const firstExpiry = client.credentials!.expiresAt.getTime();

    // The gateway answers renewals 503 until well after the first credentials expired.
    gateway.failNext = 1_000;
    const reports: Promise<Receipt>[] = [];
    const ids: string[] = [];
    const report = () => {
      const requestId = `late-${ids.length}`;
      ids.push(requestId);
      reports.push(client.reportUsage(usage(requestId)));
    };
    while (Date.now() < firstExpiry + 1500) {
      report();
      await sleep(50);
    }
    // The server cut the expired user off, and reconnecting with it is refused.
    expect(errors.some((e) => e.name === 'UserAuthenticationExpiredError' || e.name === 'AuthorizationError')).toBe(
      true,
    );
    const renewalFailures = errors.filter((e): e is CredentialsError => e instanceof CredentialsError);
    expect(renewalFailures.length).toBeGreaterThan(0);
    expect(renewalFailures.every((e) => e.status === 503 && e.retryable)).toBe(true);
    expect(client.credentialsError).toBeUndefined();

    gateway.failNext = 0;
    await until('renewed credentials', () => client.credentials?.publicKey !== firstKey);
    for (let i = 0; i < 10; i++) {
      report();
      await sleep(50);
    }
    const receipts = await Promise.all(reports);
    expect(new Set(receipts.map((r) => r.seq)).size).toBe(ids.length);
    const stored = await storedIds(`usage.events.${botId}`);
    expect(stored).toHaveLength(ids.length);
    expect(new Set(stored)).toEqual(new Set(ids.map((id) => `${botId}:${id}:completed`)));
    const users = await connectedUsers(nats.monitorUrl);
    expect(users.find((u) => u.name === `parley-usage-client:${botId}`)?.user).toBe(client.credentials?.publicKey);
    await client.close();
  });

  it('surfaces a refusal (403): onError, reports waiting to retry fail, new reports fail', async () => {
    const botId = newBot();
    const errors: Error[] = [];
    // No stream listens on this bot's subjects, so its report waits to be retried.
    const client = await clientFor(botId, errors, gatewayWithoutStream, PREFIX_WITHOUT_STREAM);
    const waiting = client.reportUsage(usage('r-waiting'));
    const outcome = waiting.then(
      () => 'stored',
      (error: unknown) => error,
    );
    await sleep(300);
    expect(client.pending).toBe(1);

    gatewayWithoutStream.refuse = { status: 403, code: 'FORBIDDEN' };
    await until('the refusal to be told', () => errors.some((e) => e instanceof CredentialsError));
    const refusal = errors.find((e): e is CredentialsError => e instanceof CredentialsError)!;
    expect(refusal).toMatchObject({ name: 'CredentialsError', status: 403, code: 'FORBIDDEN', retryable: false });
    expect(client.credentialsError).toBe(refusal);

    await expect(outcome).resolves.toBe(refusal);
    await expect(client.reportUsage(usage('r-after'))).rejects.toBe(refusal);
    expect(client.pending).toBe(0);
    await client.close();
  });

  it('connects with a credentials file managed elsewhere, on the bot inbox', async () => {
    const botId = newBot();
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'usage-client-creds-'));
    try {
      const file = join(dir, 'bot.creds');
      writeFileSync(file, (await nats.mintBotCreds(botId, 60)).creds);
      const errors: Error[] = [];
      const client = await UsageClient.connect(nats.url, { botId, credsFile: file, onError: (e) => errors.push(e) });
      clients.push(client);
      const receipt = await client.reportUsage(usage('r-file'));
      expect(receipt.duplicate).toBe(false);
      expect(await storedIds(`usage.events.${botId}`)).toEqual([`${botId}:r-file:completed`]);
      expect(errors).toEqual([]);
      await client.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('throws CredentialsError from connect when the gateway refuses the key, and refuses bad options', async () => {
    const botId = newBot();
    await expect(
      UsageClient.connect(nats.url, { botId, credentials: { gatewayUrl: gateway.url, apiKey: 'pk_wrong' } }),
    ).rejects.toMatchObject({ name: 'CredentialsError', status: 401, retryable: false });
    await expect(
      UsageClient.connect(nats.url, { botId, credentials: { gatewayUrl: 'ftp://x', apiKey: '', ttlSeconds: 0 } }),
    ).rejects.toThrow(/credentials.gatewayUrl.*credentials.apiKey.*credentials.ttlSeconds/);
    await expect(
      UsageClient.connect(nats.url, {
        botId,
        credentials: { gatewayUrl: gateway.url, apiKey: bots.get(botId)! },
        connect: { token: 'x' },
      }),
    ).rejects.toThrow(/connect.token cannot be given with credentials/);
  });
});
