import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { UsageClient, UsageReportError } from '@parley/usage-client';
import { NATS_URL } from '../support/stack';
import { adminLogin, api, editedCursor, eventually, expectCursorsRefused, newUser } from '../support/http';

const prefix = () => process.env.E2E_NATS_PREFIX ?? '';
const iso = (ms: number) => new Date(ms).toISOString();
/**
 * How long a test waits for what it reported to be counted. The e2e stack is shared: another
 * suite's flood of poison events (nats-fuzz) can sit ahead of these in the usage stream, each
 * dead-lettered in turn, and under CI's load that took longer than the usual 15 s.
 */
const INGESTED_WITHIN_MS = 40_000;
let nc: NatsConnection;

/** Messages the USAGE stream holds: what HTTP ingestion has published. */
async function streamed(): Promise<number> {
  const jsm = await jetstreamManager(nc);
  return (await jsm.streams.info(`${prefix()}_USAGE`)).state.messages;
}

const event = (botId: string, requestId: string, extra: Record<string, unknown> = {}) => ({
  request_id: requestId,
  bot_id: botId,
  status: 'completed',
  provider: 'openai',
  model: 'gpt-4o',
  channel: 'web',
  input_tokens: 100,
  output_tokens: 20,
  started_at: iso(Date.now() - 60_000),
  completed_at: iso(Date.now() - 58_000),
  ...extra,
});

describe('usage and activity (e2e)', () => {
  let admin: string;
  let owner: { id: string; token: string };
  let stranger: { id: string; token: string };
  let bot: { id: string; api_key: string };
  let otherBot: { id: string; api_key: string };
  const asBot = (key: string) => ({ 'x-api-key': key });

  beforeAll(async () => {
    nc = await connect({ servers: NATS_URL });
    admin = await adminLogin();
    owner = await newUser(admin, 'bot-owner');
    stranger = await newUser(admin, 'stranger');
    bot = (await api('POST', '/api/v1/bots', { token: owner.token, body: { name: 'usage-bot' } })).body;
    otherBot = (await api('POST', '/api/v1/bots', { token: stranger.token, body: { name: 'other-bot' } })).body;
  });

  afterAll(async () => {
    await nc.close();
  });

  it('takes usage over HTTP: 202 once stored in JetStream, a retry counted once, records readable by the owner', async () => {
    const body = { events: [event(bot.id, 'h-1'), event(bot.id, 'h-2', { status: 'started', output_tokens: 0 })] };
    const first = await api('POST', '/api/v1/usage/events', { headers: asBot(bot.api_key), body });
    expect(first.status).toBe(202);
    expect(first.body).toEqual({ accepted: 2, duplicates: 0 });
    const retry = await api('POST', '/api/v1/usage/events', { headers: asBot(bot.api_key), body });
    expect(retry.body).toEqual({ accepted: 2, duplicates: 2 });
    const single = await api('POST', '/api/v1/usage/events', {
      headers: asBot(bot.api_key),
      body: event(bot.id, 'h-2', { output_tokens: 40 }),
    });
    expect(single.status).toBe(202);

    const records = await eventually(async () => {
      const r = await api('GET', `/api/v1/usage/records?bot_id=${bot.id}`, { token: owner.token });
      return r.body.items?.length === 2 && r.body.items.every((i: { status: string }) => i.status === 'completed')
        ? r.body
        : undefined;
    }, INGESTED_WITHIN_MS);
    expect(records.items.map((r: { request_id: string }) => r.request_id).sort()).toEqual(['h-1', 'h-2']);
    expect(records.items.find((r: { request_id: string }) => r.request_id === 'h-2')).toMatchObject({
      total_tokens: 140,
      cost: null,
      currency: null,
    });
    const page = await api('GET', `/api/v1/usage/records?bot_id=${bot.id}&limit=1`, { token: owner.token });
    expect(page.body.items).toHaveLength(1);
    const rest = await api('GET', `/api/v1/usage/records?bot_id=${bot.id}&limit=1&cursor=${page.body.next_cursor}`, {
      token: owner.token,
    });
    expect(rest.body.items.map((r: { request_id: string }) => r.request_id)).not.toContain(
      page.body.items[0].request_id,
    );
  });

  it('validates the whole batch first: a bad event is a 400 naming its index, and nothing is published', async () => {
    const before = await streamed();
    const bad = await api('POST', '/api/v1/usage/events', {
      headers: asBot(bot.api_key),
      body: {
        events: [
          event(bot.id, 'v-ok'),
          event(bot.id, 'v-neg', { input_tokens: -1 }),
          event(bot.id, 'v-future', { started_at: iso(Date.now() + 3_600_000) }),
          event(bot.id, 'v-status', { status: 'done' }),
        ],
      },
    });
    expect(bad.status).toBe(400);
    expect(bad.headers.get('content-type')).toContain('application/problem+json');
    expect(bad.body.code).toBe('VALIDATION_FAILED');
    expect(bad.body.errors.map((e: { field: string }) => e.field).sort()).toEqual(
      ['events.1.input_tokens', 'events.2.started_at', 'events.2.completed_at', 'events.3.status'].sort(),
    );
    const foreign = await api('POST', '/api/v1/usage/events', {
      headers: asBot(bot.api_key),
      body: { events: [event(bot.id, 'f-1'), event(otherBot.id, 'f-2')] },
    });
    expect(foreign.status).toBe(403);
    const byUser = await api('POST', '/api/v1/usage/events', { token: owner.token, body: event(bot.id, 'u-1') });
    expect(byUser.status).toBe(403);
    const tooMany = await api('POST', '/api/v1/usage/events', {
      headers: asBot(bot.api_key),
      body: { events: Array.from({ length: 501 }, (_, i) => event(bot.id, `m-${i}`)) },
    });
    expect(tooMany.status).toBe(400);
    const huge = await api('POST', '/api/v1/usage/events', {
      headers: asBot(bot.api_key),
      body: { events: [event(bot.id, 'x'.repeat(10)), { pad: 'y'.repeat(1_100_000) }] },
    });
    expect(huge.status).toBe(413);
    expect((await api('POST', '/api/v1/usage/events', { body: event(bot.id, 'anon') })).status).toBe(401);
    expect(await streamed()).toBe(before);
  });

  it('answers summaries and records only for what the caller may read', async () => {
    await eventually(async () => {
      const r = await api('GET', `/api/v1/usage/summary?bot_id=${bot.id}`, { token: owner.token });
      return r.body.items?.[0]?.requests === 2 ? true : undefined;
    }, INGESTED_WITHIN_MS);
    const grouped = await api(
      'GET',
      `/api/v1/usage/summary?bot_id=${bot.id}&group_by=model,status,day&tz=Asia/Shanghai`,
      {
        token: owner.token,
      },
    );
    expect(grouped.status).toBe(200);
    expect(grouped.body).toMatchObject({ tz: 'Asia/Shanghai', group_by: ['model', 'status', 'day'] });
    expect(grouped.body.items).toEqual([
      expect.objectContaining({
        model: 'gpt-4o',
        status: 'completed',
        requests: 2,
        total_tokens: 260,
        unpriced_requests: 2,
      }),
    ]);
    expect((await api('GET', `/api/v1/usage/summary?group_by=week`, { token: owner.token })).status).toBe(400);
    expect((await api('GET', `/api/v1/usage/summary?tz=Mars/Olympus`, { token: owner.token })).status).toBe(400);
    expect(
      (
        await api('GET', `/api/v1/usage/summary?from=${iso(Date.now())}&to=${iso(Date.now() - 1000)}`, {
          token: owner.token,
        })
      ).status,
    ).toBe(400);

    // A filter naming what the caller may not read: 403. No filter: only what it may read.
    expect((await api('GET', `/api/v1/usage/summary?bot_id=${bot.id}`, { token: stranger.token })).status).toBe(403);
    expect((await api('GET', `/api/v1/usage/records?bot_id=${bot.id}`, { token: stranger.token })).status).toBe(403);
    expect((await api('GET', `/api/v1/usage/summary?user_id=${owner.id}`, { token: stranger.token })).status).toBe(403);
    expect((await api('GET', `/api/v1/usage/summary?user_id=${stranger.id}`, { token: stranger.token })).status).toBe(
      200,
    );
    const own = await api('GET', '/api/v1/usage/summary?group_by=bot', { token: stranger.token });
    expect(own.body.items.map((i: { bot_id: string }) => i.bot_id)).not.toContain(bot.id);
    const everything = await api('GET', '/api/v1/usage/summary?group_by=bot', { token: admin });
    expect(everything.body.items.map((i: { bot_id: string }) => i.bot_id)).toContain(bot.id);

    // A bot's key reads its own usage, nothing else.
    const mine = await api('GET', '/api/v1/usage/summary', { headers: asBot(bot.api_key) });
    expect(mine.body.items[0]).toMatchObject({ requests: 2 });
    expect(
      (await api('GET', `/api/v1/usage/summary?bot_id=${otherBot.id}`, { headers: asBot(bot.api_key) })).status,
    ).toBe(403);
    const theirs = await api('GET', '/api/v1/usage/records', { headers: asBot(otherBot.api_key) });
    expect(theirs.body.items).toEqual([]);

    // A role grant of read on the bot opens its usage and quota, not its budget.
    const role = (await api('POST', '/api/v1/roles', { token: admin, body: { name: `usage-readers-${Date.now()}` } }))
      .body;
    await api('PUT', `/api/v1/roles/${role.id}/grants`, {
      token: admin,
      body: { grants: [{ resource_type: 'bot', resource_id: bot.id, permission: 'read' }] },
    });
    const reader = await newUser(admin, 'usage-reader');
    await api('PUT', `/api/v1/users/${reader.id}/roles/${role.id}`, { token: admin });
    await eventually(async () =>
      (await api('GET', `/api/v1/usage/summary?bot_id=${bot.id}`, { token: reader.token })).status === 200
        ? true
        : undefined,
    );
    expect((await api('GET', `/api/v1/bots/${bot.id}/quota`, { token: reader.token })).status).toBe(200);
    const budget = { period: 'day', max_tokens: 1000 };
    expect((await api('PUT', `/api/v1/bots/${bot.id}/budget`, { token: reader.token, body: budget })).status).toBe(403);
    expect((await api('PUT', `/api/v1/bots/${bot.id}/budget`, { token: stranger.token, body: budget })).status).toBe(
      404,
    );
    expect((await api('GET', `/api/v1/bots/${bot.id}/quota`, { token: stranger.token })).status).toBe(404);
    expect((await api('GET', `/api/v1/bots/${bot.id}/activity`, { token: stranger.token })).status).toBe(404);
    expect((await api('GET', `/api/v1/bots/${otherBot.id}/quota`, { headers: asBot(bot.api_key) })).status).toBe(404);
  });

  it("shows a session's usage to those who may read the session", async () => {
    const session = (
      await api('POST', '/api/v1/sessions', { token: owner.token, body: { title: 'metered', bot_id: bot.id } })
    ).body;
    await api('POST', '/api/v1/usage/events', {
      headers: asBot(bot.api_key),
      body: event(bot.id, 's-1', { session_id: session.id, user_id: owner.id }),
    });
    const withUsage = await eventually(async () => {
      const r = await api('GET', `/api/v1/sessions/${session.id}?include=usage`, { token: owner.token });
      return r.body.usage?.requests === 1 ? r.body : undefined;
    }, INGESTED_WITHIN_MS);
    expect(withUsage.usage).toMatchObject({ requests: 1, input_tokens: 100, output_tokens: 20, total_tokens: 120 });
    const bySession = await api('GET', `/api/v1/usage/records?session_id=${session.id}`, { token: owner.token });
    expect(bySession.body.items.map((r: { request_id: string }) => r.request_id)).toEqual(['s-1']);
    expect((await api('GET', `/api/v1/usage/records?session_id=${session.id}`, { token: stranger.token })).status).toBe(
      404,
    );
    const asEndUser = await api('GET', `/api/v1/usage/summary?user_id=${owner.id}`, { token: owner.token });
    expect(asEndUser.body.items[0]).toMatchObject({ requests: 1, total_tokens: 120 });
  });

  it('prices by the admin price table, and reports a crossed budget in the quota', async () => {
    const priced = await api('PUT', '/api/v1/usage/prices', {
      token: admin,
      body: {
        prices: [
          {
            provider: 'acme',
            model: 'e2e-model',
            input_per_million: 1.5,
            output_per_million: '6',
            currency: 'USD',
            effective_from: iso(Date.now() - 86_400_000),
          },
        ],
      },
    });
    expect(priced.status).toBe(200);
    expect(priced.body.items[0]).toMatchObject({ input_per_million: '1.5', output_per_million: '6', currency: 'USD' });
    expect((await api('PUT', '/api/v1/usage/prices', { token: owner.token, body: { prices: [] } })).status).toBe(403);
    const listed = await api('GET', '/api/v1/usage/prices?provider=acme', { token: stranger.token });
    expect(listed.body.items.map((p: { model: string }) => p.model)).toContain('e2e-model');

    const metered = (await api('POST', '/api/v1/bots', { token: owner.token, body: { name: 'metered-bot' } })).body;
    const set = await api('PUT', `/api/v1/bots/${metered.id}/budget`, {
      token: owner.token,
      body: { period: 'day', max_tokens: 1500, max_cost: '0.01' },
    });
    expect(set.status).toBe(200);
    expect(set.body).toMatchObject({
      bot_id: metered.id,
      period: 'day',
      max_tokens: 1500,
      max_cost: '0.01',
      currency: 'USD',
    });
    const reported = await api('POST', '/api/v1/usage/events', {
      headers: asBot(metered.api_key),
      body: event(metered.id, 'p-1', { provider: 'acme', model: 'e2e-model', input_tokens: 1000, output_tokens: 1000 }),
    });
    expect(reported.status).toBe(202);
    const quota = await eventually(async () => {
      const q = await api('GET', `/api/v1/bots/${metered.id}/quota`, { headers: asBot(metered.api_key) });
      return q.body.used_tokens === 2000 ? q.body : undefined;
    }, INGESTED_WITHIN_MS);
    expect(quota).toMatchObject({
      period: 'day',
      used_tokens: 2000,
      used_cost: '0.0075',
      max_tokens: 1500,
      remaining_tokens: 0,
      remaining_cost: '0.0025',
      exceeded: true,
    });
    const summary = await api('GET', `/api/v1/usage/summary?bot_id=${metered.id}&group_by=model`, {
      token: owner.token,
    });
    expect(summary.body.items).toEqual([
      expect.objectContaining({ model: 'e2e-model', cost: '0.0075', currency: 'USD', unpriced_requests: 0 }),
    ]);
  });

  it('takes activity over HTTP and lists it for the bot', async () => {
    const posted = await api('POST', `/api/v1/bots/${bot.id}/activity`, {
      headers: asBot(bot.api_key),
      body: {
        events: [
          { event_id: 'a-1', bot_id: bot.id, event_type: 'container.start', occurred_at: iso(Date.now() - 2000) },
          {
            event_id: 'a-2',
            bot_id: bot.id,
            event_type: 'alert',
            detail: 'disk 91%',
            occurred_at: iso(Date.now() - 1000),
          },
        ],
      },
    });
    expect(posted.status).toBe(202);
    expect(
      (await api('POST', `/api/v1/bots/${otherBot.id}/activity`, { headers: asBot(bot.api_key), body: {} })).status,
    ).toBe(403);
    const listed = await eventually(async () => {
      const r = await api('GET', `/api/v1/bots/${bot.id}/activity`, { headers: asBot(bot.api_key) });
      return r.body.items?.length === 2 ? r.body : undefined;
    }, INGESTED_WITHIN_MS);
    expect(listed.items.map((a: { event_id: string }) => a.event_id)).toEqual(['a-2', 'a-1']);
    const alerts = await api('GET', `/api/v1/bots/${bot.id}/activity?event_type=alert`, { token: owner.token });
    expect(alerts.body.items).toEqual([expect.objectContaining({ event_id: 'a-2', detail: 'disk 91%' })]);
  });

  it('walks records, prices and activity with cursors, each item once, and refuses cursors edited or made for another list, filter or caller', async () => {
    const walker = (await api('POST', '/api/v1/bots', { token: owner.token, body: { name: 'walker-bot' } })).body;
    const now = Date.now();
    const events = [1, 2, 3].map((i) => event(walker.id, `w-${i}`, { started_at: iso(now - 60_000 - i * 1000) }));
    expect(
      (await api('POST', '/api/v1/usage/events', { headers: asBot(walker.api_key), body: { events } })).status,
    ).toBe(202);
    const activity = [1, 2, 3].map((i) => ({
      event_id: `w-${i}`,
      bot_id: walker.id,
      event_type: 'walk',
      occurred_at: iso(now - 10_000 - i * 1000),
    }));
    const posted = await api('POST', `/api/v1/bots/${walker.id}/activity`, {
      headers: asBot(walker.api_key),
      body: { events: activity },
    });
    expect(posted.status).toBe(202);
    const provider = `walk-${walker.id.slice(-12)}`;
    const versions = ['m-1', 'm-2'].flatMap((model) =>
      [1, 2].map((d) => ({
        provider,
        model,
        input_per_million: d,
        output_per_million: d,
        currency: 'USD',
        effective_from: iso(now - d * 86_400_000),
      })),
    );
    expect((await api('PUT', '/api/v1/usage/prices', { token: admin, body: { prices: versions } })).status).toBe(200);

    const records = `/api/v1/usage/records?bot_id=${walker.id}`;
    const prices = `/api/v1/usage/prices?provider=${provider}`;
    const activities = `/api/v1/bots/${walker.id}/activity?event_type=walk`;
    await eventually(async () => {
      const [r, a] = await Promise.all([
        api('GET', records, { token: owner.token }),
        api('GET', activities, { token: owner.token }),
      ]);
      return r.body.items?.length === 3 && a.body.items?.length === 3 ? true : undefined;
    }, INGESTED_WITHIN_MS);
    const walk = async (path: string, token: string) => {
      const items: Record<string, string>[] = [];
      let cursor: string | null = null;
      do {
        const res: { status: number; body: { items: Record<string, string>[]; next_cursor: string | null } } =
          await api('GET', `${path}&limit=1${cursor ? `&cursor=${cursor}` : ''}`, { token });
        expect(res.status).toBe(200);
        items.push(...res.body.items);
        cursor = res.body.next_cursor;
      } while (cursor);
      return items;
    };
    expect((await walk(records, owner.token)).map((r) => r.request_id)).toEqual(['w-1', 'w-2', 'w-3']);
    expect((await walk(activities, owner.token)).map((a) => a.event_id)).toEqual(['w-1', 'w-2', 'w-3']);
    expect((await walk(prices, stranger.token)).map((p) => `${p.model} ${p.input_per_million}`)).toEqual([
      'm-1 1',
      'm-1 2',
      'm-2 1',
      'm-2 2',
    ]);

    const firstCursor = async (path: string, token: string) =>
      (await api('GET', `${path}&limit=1`, { token })).body.next_cursor as string;
    const record = await firstCursor(records, owner.token);
    const price = await firstCursor(prices, stranger.token);
    const act = await firstCursor(activities, owner.token);
    const refused: [string, string, string][] = [
      ['records: edited', `${records}&cursor=${editedCursor(record)}`, owner.token],
      ['records: unsigned', `${records}&cursor=WyJ4Il0`, owner.token],
      ['records: another filter', `${records}&status=completed&cursor=${record}`, owner.token],
      ['records: another range', `${records}&to=${iso(now)}&cursor=${record}`, owner.token],
      ['records: another caller', `${records}&cursor=${record}`, admin],
      ['prices: edited', `${prices}&cursor=${editedCursor(price)}`, stranger.token],
      ['prices: another filter', `${prices}&model=m-2&cursor=${price}`, stranger.token],
      ['prices: another caller', `${prices}&cursor=${price}`, owner.token],
      ['activity: edited', `${activities}&cursor=${editedCursor(act)}`, owner.token],
      ['activity: another filter', `/api/v1/bots/${walker.id}/activity?cursor=${act}`, owner.token],
      ['activity: another caller', `${activities}&cursor=${act}`, admin],
      ['activity: a records cursor', `${activities}&cursor=${record}`, owner.token],
    ];
    await expectCursorsRefused(refused);
  });

  it('serves a bot that reports with @parley/usage-client and asks its quota over NATS', async () => {
    const reporter = (await api('POST', '/api/v1/bots', { token: owner.token, body: { name: 'client-bot' } })).body;
    await api('PUT', `/api/v1/bots/${reporter.id}/budget`, {
      token: owner.token,
      body: { period: 'day', max_tokens: 10_000 },
    });
    const client = new UsageClient(nc, { botId: reporter.id, subjectPrefix: prefix() });
    const call = { request_id: 'c-1', provider: 'openai', model: 'gpt-4o', started_at: iso(Date.now() - 5000) };
    await client.reportUsage({ ...call, status: 'started', input_tokens: 300 });
    const done = await client.reportUsage({ ...call, status: 'completed', input_tokens: 300, output_tokens: 50 });
    expect(done.duplicate).toBe(false);
    expect(
      (await client.reportUsage({ ...call, status: 'completed', input_tokens: 300, output_tokens: 50 })).duplicate,
    ).toBe(true);
    await expect(client.reportUsage({ ...call, status: 'completed', input_tokens: -3 })).rejects.toBeInstanceOf(
      UsageReportError,
    );
    await client.reportActivity({ event_id: 'c-act', event_type: 'tool.call', occurred_at: iso(Date.now()) });
    // Ingestion shares the stack with the other suites (the NATS fuzz floods the same stream):
    // a generous bound, and the last answer if it is not reached.
    let last: unknown;
    const quota = await eventually(async () => {
      const q = await client.checkQuota();
      last = q;
      return q.used_tokens === 350 ? q : undefined;
    }, 40_000).catch((error: unknown) => {
      throw new Error(`${String(error)}; last quota: ${JSON.stringify(last)}`);
    });
    expect(quota).toMatchObject({
      bot_id: reporter.id,
      period: 'day',
      max_tokens: 10_000,
      remaining_tokens: 9650,
      exceeded: false,
    });
    await eventually(async () => {
      const r = await api('GET', `/api/v1/bots/${reporter.id}/activity`, { token: owner.token });
      return r.body.items?.length === 1 ? true : undefined;
    }, INGESTED_WITHIN_MS);
    await client.close();
    expect(nc.isClosed()).toBe(false);
  });
});
