import { randomUUID } from 'node:crypto';
import { AccessControlRpc, activitySubject, activityMsgId, type UsageEventInput } from '@parley/contracts';
import type { BatchItem } from '@parley/kit';
import { UsageIngest } from '../src/ingestion/usage-ingest.service';
import { ActivityQueries } from '../src/activity/activity-queries.service';
import { UsageQueries } from '../src/records/usage-queries.service';
import { UsageFixture, eventually } from './support';
import { runId } from '../../../test/support/stack';

const fx = new UsageFixture(runId('usg'));
const iso = (ms: number) => new Date(ms).toISOString();

interface RecordRow {
  request_id: string;
  status: string;
  input_tokens: string;
  output_tokens: string;
  total_tokens: string;
  started_at: Date;
  completed_at: Date | null;
}

const recordsOf = (botId: string) =>
  fx.sql<RecordRow>('select * from usage_records where bot_id = ? order by request_id', [botId]);

/** The rollup and the daily counters must always add up to the raw records. */
async function expectDerivedTablesConsistent(botId: string): Promise<void> {
  const [raw] = await fx.sql(
    `select count(*)::int as requests, coalesce(sum(total_tokens), 0)::int as tokens, coalesce(sum(cost), 0)::text as cost
     from usage_records where bot_id = ?`,
    [botId],
  );
  const [hourly] = await fx.sql(
    `select coalesce(sum(requests), 0)::int as requests, coalesce(sum(total_tokens), 0)::int as tokens,
            coalesce(sum(cost), 0)::text as cost from usage_hourly where bot_id = ?`,
    [botId],
  );
  const [daily] = await fx.sql(
    `select coalesce(sum(requests), 0)::int as requests, coalesce(sum(total_tokens), 0)::int as tokens,
            coalesce(sum(cost), 0)::text as cost from usage_daily where bot_id = ?`,
    [botId],
  );
  expect(Number(hourly.cost)).toBe(Number(raw.cost));
  expect({ ...hourly, cost: Number(hourly.cost) }).toEqual({ ...raw, cost: Number(raw.cost) });
  expect({ ...daily, cost: Number(daily.cost) }).toEqual({ ...raw, cost: Number(raw.cost) });
}

beforeAll(() => fx.start());
afterAll(() => fx.stop());

describe(UsageIngest.name, () => {
  it('moves a status forward only: the first terminal status wins, a late started changes nothing', async () => {
    const bot = await fx.bot('order');
    const t1 = Date.now() - 60 * 60 * 1000;
    const t2 = t1 + 5000;
    const base = { bot_id: bot, provider: 'acme', model: 'm-order' };
    const sequence: UsageEventInput[] = [
      // completed before started: the late started changes nothing
      {
        ...base,
        request_id: 'a',
        status: 'completed',
        input_tokens: 10,
        output_tokens: 5,
        started_at: iso(t1),
        completed_at: iso(t2),
      },
      { ...base, request_id: 'a', status: 'started', input_tokens: 99, started_at: iso(t1) },
      // started_at is fixed by the first report
      { ...base, request_id: 'b', status: 'started', input_tokens: 7, started_at: iso(t1) },
      {
        ...base,
        request_id: 'b',
        status: 'completed',
        input_tokens: 7,
        output_tokens: 3,
        started_at: iso(t2),
        completed_at: iso(t2 + 1000),
      },
      // first terminal status wins, both ways
      { ...base, request_id: 'c', status: 'completed', input_tokens: 1, output_tokens: 1, started_at: iso(t1) },
      { ...base, request_id: 'c', status: 'failed', input_tokens: 50, output_tokens: 50, started_at: iso(t1) },
      { ...base, request_id: 'd', status: 'failed', input_tokens: 2, started_at: iso(t1) },
      { ...base, request_id: 'd', status: 'completed', input_tokens: 40, output_tokens: 40, started_at: iso(t1) },
      // a repeated started counts once
      { ...base, request_id: 'e', status: 'started', input_tokens: 4, started_at: iso(t1) },
      { ...base, request_id: 'f', status: 'started', started_at: iso(t1) },
      { ...base, request_id: 'f', status: 'failed', input_tokens: 8, total_tokens: 20, started_at: iso(t1) },
    ];
    for (const event of sequence) await fx.publish(event);
    await fx.publish(
      { ...base, request_id: 'e', status: 'started', input_tokens: 4, started_at: iso(t1) },
      { msgId: 'again-e' },
    );

    const rows = await eventually(async () => {
      const r = await recordsOf(bot);
      // Batches run two at a time, and one that lost a race is retried later: wait for every
      // request's final status, not only for the last one published.
      const final = { a: 'completed', b: 'completed', c: 'completed', d: 'failed', e: 'started', f: 'failed' };
      const done = r.length === 6 && r.every((x) => final[x.request_id as keyof typeof final] === x.status);
      return done ? r : undefined;
    });
    const byId = Object.fromEntries(rows.map((r) => [r.request_id, r]));
    expect(byId.a).toMatchObject({ status: 'completed', input_tokens: '10', output_tokens: '5', total_tokens: '15' });
    expect(new Date(byId.a.started_at).toISOString()).toBe(iso(t1));
    expect(byId.b).toMatchObject({ status: 'completed', input_tokens: '7', output_tokens: '3', total_tokens: '10' });
    expect(new Date(byId.b.started_at).toISOString()).toBe(iso(t1));
    expect(new Date(byId.b.completed_at as Date).toISOString()).toBe(iso(t2 + 1000));
    expect(byId.c).toMatchObject({ status: 'completed', total_tokens: '2' });
    expect(byId.d).toMatchObject({ status: 'failed', total_tokens: '2' });
    expect(byId.e).toMatchObject({ status: 'started', total_tokens: '4' });
    expect(byId.f).toMatchObject({ status: 'failed', total_tokens: '20' });
    await expectDerivedTablesConsistent(bot);
    const [started] = await fx.sql(
      `select sum(requests)::int as n from usage_hourly where bot_id = ? and status = 'started'`,
      [bot],
    );
    expect(started.n).toBe(1);
  });

  it("keeps each request's first report first while batches are written two at a time", async () => {
    const bot = await fx.bot('pairs');
    const t1 = Date.now() - 60 * 60 * 1000;
    const base = { bot_id: bot, provider: 'acme', model: 'm-pairs' };
    // Each request's end names a later start than its first report: the first report must win
    // even when the two land in batches written concurrently.
    const events: UsageEventInput[] = [];
    for (let i = 0; i < 150; i++) {
      events.push({ ...base, request_id: `p-${i}`, status: 'started', input_tokens: 1, started_at: iso(t1) });
      events.push({
        ...base,
        request_id: `p-${i}`,
        status: 'completed',
        input_tokens: 1,
        output_tokens: 1,
        started_at: iso(t1 + 5000),
      });
    }
    await Promise.all(events.map((event) => fx.publish(event)));
    const rows = await eventually(async () => {
      const r = await recordsOf(bot);
      return r.length === 150 && r.every((x) => x.status === 'completed') ? r : undefined;
    });
    const moved = rows.filter((r) => new Date(r.started_at).toISOString() !== iso(t1)).map((r) => r.request_id);
    expect(moved).toEqual([]);
    await expectDerivedTablesConsistent(bot);
  });

  it('answers no summary row for a status a request has moved away from', async () => {
    const bot = await fx.bot('moved');
    // 90 minutes back: inside a whole hour of the range, so the summary reads it from the rollup.
    const started = { request_id: 'm-1', bot_id: bot, model: 'm', started_at: iso(Date.now() - 90 * 60_000) };
    await fx.publish({ ...started, status: 'started', input_tokens: 5 });
    await eventually(async () => ((await recordsOf(bot)).length === 1 ? true : undefined));
    await fx.publish({ ...started, status: 'completed', input_tokens: 5, output_tokens: 7 });
    await eventually(async () => ((await recordsOf(bot))[0]?.status === 'completed' ? true : undefined));
    // The started row is still in the rollup, netted to zero.
    const [zero] = await fx.sql<{ n: number }>(
      `select count(*)::int as n from usage_hourly where bot_id = ? and status = 'started' and requests = 0`,
      [bot],
    );
    expect(zero.n).toBe(1);
    const summary = await fx.app.get(UsageQueries).summary(fx.admin, {
      actor: fx.admin,
      bot_id: bot,
      group_by: ['status'],
      tz: 'UTC',
      from: iso(Date.now() - 3 * 60 * 60 * 1000),
    });
    expect(summary.items).toEqual([expect.objectContaining({ status: 'completed', requests: 1, total_tokens: 12 })]);
  });

  it('counts a duplicate publish and a redelivered batch once, and says so in a metric', async () => {
    const bot = await fx.bot('dup');
    const event: UsageEventInput = {
      request_id: 'dup-1',
      bot_id: bot,
      status: 'completed',
      model: 'm',
      provider: 'p',
      input_tokens: 100,
      output_tokens: 20,
      started_at: iso(Date.now() - 1000),
    };
    const first = await fx.publish(event);
    const again = await fx.publish(event);
    expect(first.duplicate).toBe(false);
    expect(again.duplicate).toBe(true); // the stream's duplicate window drops the same Nats-Msg-Id
    await fx.publish(event, { msgId: 'past-the-window' }); // as if after the window: the table drops it
    await eventually(async () => ((await recordsOf(bot)).length === 1 ? true : undefined));
    await eventually(async () =>
      /outcome="duplicate"[^}]*\} [1-9]/.test(await fx.metric('parley_usage_events_total')) ? true : undefined,
    );

    // A redelivery after a crash between commit and ack hands the same batch over again.
    const items: BatchItem<never>[] = [
      {
        event: { ...event, input_tokens: 100, output_tokens: 20 } as never,
        raw: event,
        meta: {
          subject: `usage.events.${bot}`,
          deliveryCount: 2,
          streamSequence: 1,
          msgId: undefined,
          storedAt: Date.now(),
        },
      },
    ];
    const ingest = fx.app.get(UsageIngest);
    expect(await ingest.ingest(items)).toEqual([{ ok: true }]);
    expect(await ingest.ingest(items)).toEqual([{ ok: true }]);
    const rows = await recordsOf(bot);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ total_tokens: '120' });
    await expectDerivedTablesConsistent(bot);
  });

  it('dead-letters bad events with their reason and keeps going', async () => {
    const bot = await fx.bot('dlq');
    const other = await fx.bot('dlq-other');
    const disabled = await fx.bot('dlq-disabled');
    await fx.rpc.call(AccessControlRpc.updateBot, { actor: fx.admin, id: disabled, patch: { enabled: false } });
    const unknown = randomUUID();
    const now = Date.now();
    const good = (requestId: string, botId = bot): UsageEventInput => ({
      request_id: requestId,
      bot_id: botId,
      status: 'completed',
      input_tokens: 1,
      output_tokens: 1,
      started_at: iso(now - 1000),
    });
    await fx.js.publish(fx.nats.subject(`usage.events.${bot}`), '{"not": json');
    await fx.publish({ ...good('neg'), input_tokens: -5 });
    await fx.publish({ ...good('nul'), model: 'gpt\u0000x' });
    await fx.publish({ ...good('future'), started_at: iso(now + 60 * 60 * 1000) });
    await fx.publish({ ...good('ancient'), started_at: iso(now - 400 * 24 * 60 * 60 * 1000) });
    await fx.publish({ ...good('backwards'), completed_at: iso(now - 60_000) });
    await fx.publish(good('mismatch'), { subjectBot: other });
    await fx.publish(good('unknown', unknown));
    await fx.publish(good('disabled', disabled));
    await fx.publish(good('after-all-that'));

    await eventually(async () => ((await recordsOf(bot)).length === 1 ? true : undefined));
    const letters = await eventually(async () => {
      const all = await fx.deadLetters();
      const mine = all.filter((l) => [bot, other, unknown, disabled].some((b) => l.subject.endsWith(b)));
      return mine.length >= 9 ? mine : undefined;
    });
    const byRequest = new Map(
      letters.map((l) => [
        typeof l.event === 'object' && l.event ? (l.event as { request_id?: string }).request_id : 'raw',
        l,
      ]),
    );
    expect(byRequest.get('raw')).toMatchObject({
      code: 'NOT_JSON',
      subject: `usage.events.${bot}`,
      event: '{"not": json',
    });
    expect(byRequest.get('neg')).toMatchObject({
      code: 'INVALID_EVENT',
      reason: expect.stringContaining('input_tokens'),
    });
    expect(byRequest.get('neg')?.event).toMatchObject({ input_tokens: -5 });
    expect(byRequest.get('nul')).toMatchObject({ code: 'INVALID_EVENT', reason: expect.stringContaining('model') });
    expect(byRequest.get('future')).toMatchObject({
      code: 'BAD_TIMESTAMP',
      reason: expect.stringContaining('started_at'),
    });
    expect(byRequest.get('ancient')).toMatchObject({ code: 'BAD_TIMESTAMP', reason: expect.stringContaining('older') });
    expect(byRequest.get('backwards')).toMatchObject({
      code: 'BAD_TIMESTAMP',
      reason: expect.stringContaining('completed_at'),
    });
    expect(byRequest.get('mismatch')).toMatchObject({ code: 'BOT_MISMATCH', subject: `usage.events.${other}` });
    expect(byRequest.get('unknown')).toMatchObject({ code: 'UNKNOWN_BOT' });
    expect(byRequest.get('disabled')).toMatchObject({ code: 'BOT_DISABLED' });
    for (const letter of letters) expect(Date.parse(letter.received_at)).toBeGreaterThan(now - 60_000);
    expect(letters).toHaveLength(9);
    const metric = await fx.metric('parley_dead_letters_total');
    expect(metric).toMatch(
      /code="BOT_DISABLED"[^}]*subject="dlq.usage"[^}]*\} 1|subject="dlq.usage"[^}]*code="BOT_DISABLED"/,
    );
    expect((await recordsOf(bot)).map((r) => r.request_id)).toEqual(['after-all-that']);
  });

  it('stores activity once per event_id and lists it newest first', async () => {
    const bot = await fx.bot('activity');
    const now = Date.now();
    const publish = (eventId: string, type: string, ago: number, msgId?: string) =>
      fx.js.publish(
        fx.nats.subject(activitySubject(bot)),
        JSON.stringify({
          event_id: eventId,
          bot_id: bot,
          event_type: type,
          detail: `d-${eventId}`,
          metadata: { k: 1 },
          occurred_at: iso(now - ago),
        }),
        { msgID: msgId ?? activityMsgId({ bot_id: bot, event_id: eventId }) },
      );
    await publish('e1', 'container.start', 3000);
    await publish('e2', 'command', 2000);
    await publish('e3', 'command', 1000);
    await publish('e2', 'command', 2000, 'again');
    const queries = fx.app.get(ActivityQueries);
    const all = await eventually(async () => {
      const page = await queries.list(fx.admin, { bot_id: bot, limit: 10 });
      return page.items.length === 3 ? page : undefined;
    });
    expect(all.items.map((a) => a.event_id)).toEqual(['e3', 'e2', 'e1']);
    expect(all.items[0]).toMatchObject({ event_type: 'command', detail: 'd-e3', metadata: { k: 1 }, bot_id: bot });
    const first = await queries.list(fx.admin, { bot_id: bot, limit: 1, event_type: 'command' });
    expect(first.items.map((a) => a.event_id)).toEqual(['e3']);
    const second = await queries.list(fx.admin, {
      bot_id: bot,
      limit: 1,
      event_type: 'command',
      cursor: first.next_cursor ?? undefined,
    });
    expect(second.items.map((a) => a.event_id)).toEqual(['e2']);
    expect(second.next_cursor).toBeNull();
    expect(await fx.metric('parley_usage_events_total')).toMatch(/kind="activity",outcome="duplicate"[^}]*\} 1/);
  });
});
