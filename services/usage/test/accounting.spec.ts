import { randomUUID } from 'node:crypto';
import { headers as natsHeaders } from '@nats-io/transport-node';
import { QuotaCheckRpc, type UsageEventInput, type UsageGroupKey, type UsageSummaryItem } from '@parley/contracts';
import { REDIS } from '@parley/kit';
import type { Redis } from 'ioredis';
import { BudgetsRepository } from '../src/budgets/budgets.repository';
import { BudgetsService } from '../src/budgets/budgets.service';
import { QuotaCounters } from '../src/budgets/quota-counters';
import { periodOf } from '../src/budgets/periods';
import { PricesService } from '../src/prices/prices.service';
import { UsageQueries } from '../src/records/usage-queries.service';
import { UsageFixture, eventually } from './support';
import { runId } from '../../../test/support/stack';

const fx = new UsageFixture(runId('acc'));
const HOUR = 60 * 60 * 1000;
const iso = (ms: number) => new Date(ms).toISOString();

beforeAll(() => fx.start());
afterAll(() => fx.stop());

// ---- exact decimals, written here independently of the service --------------------------
const SCALE = 10n ** 12n;
function units(decimal: string): bigint {
  const [whole, fraction = ''] = decimal.split('.');
  return BigInt(whole) * SCALE + BigInt(fraction.padEnd(12, '0'));
}
function decimal(u: bigint): string {
  const whole = u / SCALE;
  const fraction = (u % SCALE).toString().padStart(12, '0').replace(/0+$/, '');
  return fraction ? `${whole}.${fraction}` : `${whole}`;
}

// ---- local hours and days, from Intl --------------------------------------------------------
function localParts(t: number, tz: string) {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat('en-CA', {
      timeZone: tz,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      timeZoneName: 'longOffset',
    })
      .formatToParts(new Date(t))
      .map((p) => [p.type, p.value]),
  );
  const offset = /^GMT(\+00:00)?$/.test(parts.timeZoneName) ? 'Z' : parts.timeZoneName.replace('GMT', '');
  return {
    day: `${parts.year}-${parts.month}-${parts.day}`,
    hour: `${parts.year}-${parts.month}-${parts.day}T${parts.hour}:00:00${offset}`,
  };
}

interface Final {
  bot_id: string;
  provider: string | null;
  model: string | null;
  channel: string | null;
  user_id: string | null;
  status: string;
  started: number;
  input: number;
  output: number;
  cost: bigint | null;
  currency: string | null;
}

const MODELS = [
  { provider: 'openai', model: 'gpt-4o' },
  { provider: 'openai', model: 'gpt-4o-mini' },
  { provider: 'deepseek', model: 'deepseek-chat' },
  { provider: 'local', model: 'llama' },
  { provider: null, model: null },
];

/** What a summary must say, computed from the final records, with the API's currency rule. */
function expected(
  records: Final[],
  q: { from: number; to: number; group_by: UsageGroupKey[]; tz: string; bot_id?: string; user_id?: string },
): UsageSummaryItem[] {
  const keyOf = (r: Final): Record<string, string | null> => {
    const local = localParts(r.started, q.tz);
    const all: Record<UsageGroupKey, [string, string | null]> = {
      bot: ['bot_id', r.bot_id],
      model: ['model', r.model],
      provider: ['provider', r.provider],
      channel: ['channel', r.channel],
      user: ['user_id', r.user_id],
      status: ['status', r.status],
      hour: ['hour', local.hour],
      day: ['day', local.day],
    };
    return Object.fromEntries(q.group_by.map((k) => all[k]));
  };
  const groups = new Map<
    string,
    { keys: Record<string, string | null>; byCurrency: Map<string | null, UsageSummaryItem> }
  >();
  for (const r of records) {
    if (r.started < q.from || r.started >= q.to) continue;
    if (q.bot_id && r.bot_id !== q.bot_id) continue;
    if (q.user_id && r.user_id !== q.user_id) continue;
    const keys = keyOf(r);
    const id = JSON.stringify(keys);
    const group = groups.get(id) ?? { keys, byCurrency: new Map() };
    groups.set(id, group);
    const row = group.byCurrency.get(r.currency) ?? {
      ...keys,
      requests: 0,
      input_tokens: 0,
      output_tokens: 0,
      total_tokens: 0,
      cost: r.currency ? '0' : null,
      currency: r.currency,
      unpriced_requests: 0,
    };
    row.requests += 1;
    row.input_tokens += r.input;
    row.output_tokens += r.output;
    row.total_tokens += r.input + r.output;
    if (r.cost !== null) row.cost = decimal(units(row.cost ?? '0') + r.cost);
    else row.unpriced_requests += 1;
    group.byCurrency.set(r.currency, row);
  }
  const out: UsageSummaryItem[] = [];
  for (const { byCurrency } of groups.values()) {
    const unpriced = byCurrency.get(null);
    const priced = [...byCurrency.values()].filter((r) => r.currency !== null);
    if (unpriced && priced.length === 1) {
      const [p] = priced;
      p.requests += unpriced.requests;
      p.input_tokens += unpriced.input_tokens;
      p.output_tokens += unpriced.output_tokens;
      p.total_tokens += unpriced.total_tokens;
      p.unpriced_requests += unpriced.unpriced_requests;
      out.push(p);
    } else out.push(...byCurrency.values());
  }
  return out;
}
const sorted = (items: UsageSummaryItem[]) => [...items].map((i) => JSON.stringify(i, Object.keys(i).sort())).sort();

describe(UsageQueries.name, () => {
  const finals: Final[] = [];
  let botA: string;
  let botB: string;
  const users = [randomUUID(), randomUUID(), randomUUID(), null];
  const base = Date.now() - 60 * HOUR - 23 * 60 * 1000 - 7_777;
  const mid = base + 20.5 * HOUR;

  beforeAll(async () => {
    botA = await fx.bot('sum-a');
    botB = await fx.bot('sum-b');
    const longAgo = iso(base - 10 * 24 * HOUR);
    await fx.app.get(PricesService).put(fx.admin, [
      {
        provider: 'openai',
        model: 'gpt-4o',
        input_per_million: '2.5',
        output_per_million: '10',
        currency: 'USD',
        effective_from: longAgo,
      },
      {
        provider: 'openai',
        model: 'gpt-4o-mini',
        input_per_million: '0.15',
        output_per_million: '0.6',
        currency: 'USD',
        effective_from: longAgo,
      },
      {
        provider: 'openai',
        model: 'gpt-4o-mini',
        input_per_million: '0.3',
        output_per_million: '1.2',
        currency: 'USD',
        effective_from: iso(mid),
      },
      {
        provider: 'deepseek',
        model: 'deepseek-chat',
        input_per_million: '1',
        output_per_million: '2.000001',
        currency: 'CNY',
        effective_from: longAgo,
      },
    ]);
    const priceOf = (provider: string | null, model: string | null, at: number) => {
      if (model === 'gpt-4o') return { i: '2.5', o: '10', c: 'USD' };
      if (model === 'gpt-4o-mini')
        return at < mid ? { i: '0.15', o: '0.6', c: 'USD' } : { i: '0.3', o: '1.2', c: 'USD' };
      if (model === 'deepseek-chat' && provider === 'deepseek') return { i: '1', o: '2.000001', c: 'CNY' };
      return undefined;
    };

    let seed = 42;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const pick = <T>(list: T[]) => list[Math.floor(random() * list.length)];
    const events: { event: UsageEventInput; msgId?: string }[] = [];
    for (let n = 0; n < 500; n++) {
      const bot = random() < 0.6 ? botA : botB;
      const { provider, model } = pick(MODELS);
      const channel = pick(['web', 'wechat', null]);
      const user = pick(users);
      const started = base + Math.floor(random() * 50 * HOUR);
      const input = Math.floor(random() * 2000);
      const output = Math.floor(random() * 500);
      const roll = random();
      const terminal = roll < 0.6 ? 'completed' : roll < 0.75 ? 'failed' : undefined;
      const common = {
        request_id: `req-${n}`,
        bot_id: bot,
        provider,
        model,
        channel,
        user_id: user,
        started_at: iso(started),
      };
      const startedEvent: UsageEventInput = { ...common, status: 'started', input_tokens: input };
      const list: UsageEventInput[] = [];
      if (!terminal) list.push(startedEvent);
      else {
        const end: UsageEventInput = {
          ...common,
          status: terminal,
          input_tokens: input,
          output_tokens: output,
          completed_at: iso(started + 1500),
        };
        const order = random();
        list.push(...(order < 0.5 ? [startedEvent, end] : order < 0.75 ? [end, startedEvent] : [end]));
      }
      for (const event of list) events.push({ event });
      if (random() < 0.1) events.push({ event: pick(list), msgId: `dup-${n}` });
      const finalInput = input;
      const finalOutput = terminal ? output : 0;
      const price = priceOf(provider, model, started);
      finals.push({
        bot_id: bot,
        provider,
        model,
        channel,
        user_id: user,
        status: terminal ?? 'started',
        started,
        input: finalInput,
        output: finalOutput,
        cost: price ? (BigInt(finalInput) * units(price.i) + BigInt(finalOutput) * units(price.o)) / 1_000_000n : null,
        currency: price ? price.c : null,
      });
    }
    for (let i = 0; i < events.length; i += 100) {
      await Promise.all(events.slice(i, i + 100).map((e) => fx.publish(e.event, { msgId: e.msgId })));
    }
    const settled = (r: { n: number; started: number }) =>
      r.n === 500 && r.started === finals.filter((f) => f.status === 'started').length;
    await eventually(async () => {
      const [row] = await fx.sql<{ n: number; started: number }>(
        `select count(*)::int as n, count(*) filter (where status = 'started')::int as started from usage_records where bot_id in (?, ?)`,
        [botA, botB],
      );
      return settled(row) ? true : undefined;
    }, 30_000);
  });

  const from = () => base + HOUR + 17 * 60 * 1000 + 3_500;
  const to = () => base + 47 * HOUR + 41 * 60 * 1000 + 12_250;

  const cases: { group_by: UsageGroupKey[]; tz: string; filter?: 'botA' | 'user' }[] = [
    { group_by: [], tz: 'UTC' },
    { group_by: ['bot'], tz: 'UTC' },
    { group_by: ['model', 'provider'], tz: 'UTC' },
    { group_by: ['channel', 'status'], tz: 'UTC' },
    { group_by: ['user'], tz: 'UTC' },
    { group_by: ['hour'], tz: 'UTC' },
    { group_by: ['day'], tz: 'Asia/Shanghai' },
    { group_by: ['hour', 'model'], tz: 'America/New_York' },
    { group_by: ['hour'], tz: 'Asia/Kolkata' },
    { group_by: ['day', 'status'], tz: 'Asia/Kathmandu' },
    { group_by: ['day', 'model'], tz: 'Asia/Kolkata' },
    { group_by: ['hour', 'day'], tz: 'Asia/Kathmandu' },
    { group_by: ['day'], tz: 'Australia/Adelaide' },
    { group_by: ['hour'], tz: 'Australia/Lord_Howe' },
    { group_by: ['bot', 'model', 'status', 'channel', 'day'], tz: 'Europe/Berlin' },
    { group_by: ['model'], tz: 'UTC', filter: 'botA' },
    { group_by: ['model', 'hour'], tz: 'UTC', filter: 'user' },
  ];

  it.each(cases)('matches totals computed from the records: group_by=$group_by tz=$tz filter=$filter', async (c) => {
    const q = {
      from: iso(from()),
      to: iso(to()),
      group_by: c.group_by,
      tz: c.tz,
      ...(c.filter === 'botA' ? { bot_id: botA } : {}),
      ...(c.filter === 'user' ? { user_id: users[0] as string } : {}),
    };
    const scoped = finals.filter((f) => f.bot_id === botA || f.bot_id === botB);
    const want = expected(scoped, { ...q, from: from(), to: to() });
    const got = await fx.app.get(UsageQueries).summary(fx.admin, { ...q, actor: fx.admin });
    const mine = got.items.filter((i) => !('bot_id' in i) || i.bot_id === botA || i.bot_id === botB);
    expect(want.length).toBeGreaterThan(0);
    expect(sorted(c.group_by.includes('bot') ? mine : got.items)).toEqual(sorted(want));
  });

  it('lists records newest first through every cursor page', async () => {
    const queries = fx.app.get(UsageQueries);
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await queries.records(fx.admin, {
        actor: fx.admin,
        bot_id: botA,
        from: iso(from()),
        to: iso(to()),
        limit: 37,
        cursor,
      });
      seen.push(...page.items.map((r) => `${r.started_at}|${r.request_id}`));
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
    const want = finals
      .map((f, n) => ({ ...f, request_id: `req-${n}` }))
      .filter((f) => f.bot_id === botA && f.started >= from() && f.started < to())
      .sort((a, b) => b.started - a.started || (b.request_id > a.request_id ? 1 : -1))
      .map((f) => `${iso(f.started)}|${f.request_id}`);
    expect(seen).toEqual(want);
  });
});

describe(PricesService.name, () => {
  it('prices by the version in force at started_at, and re-prices when versions are stored later', async () => {
    const bot = await fx.bot('reprice');
    const now = Date.now();
    const event = (id: string, at: number): UsageEventInput => ({
      request_id: id,
      bot_id: bot,
      provider: 'acme',
      model: `late-${bot}`,
      status: 'completed',
      input_tokens: 1000,
      output_tokens: 1000,
      started_at: iso(at),
    });
    await fx.publish(event('early', now - 3 * HOUR));
    await fx.publish(event('recent', now - HOUR));
    const costs = async () => {
      const rows = await fx.sql<{ request_id: string; cost: string | null }>(
        'select request_id, trim_scale(cost)::text as cost from usage_records where bot_id = ? order by request_id',
        [bot],
      );
      return Object.fromEntries(rows.map((r) => [r.request_id, r.cost]));
    };
    await eventually(async () => (Object.keys(await costs()).length === 2 ? true : undefined));
    expect(await costs()).toEqual({ early: null, recent: null });

    const prices = fx.app.get(PricesService);
    const put = (from: number, i: string, o: string) =>
      prices.put(fx.admin, [
        {
          provider: 'acme',
          model: `late-${bot}`,
          input_per_million: i,
          output_per_million: o,
          currency: 'USD',
          effective_from: iso(from),
        },
      ]);
    await put(now - 2 * HOUR, '1', '2');
    await eventually(async () => ((await costs()).recent === '0.003' ? true : undefined));
    expect((await costs()).early).toBeNull();

    await put(now - 4 * HOUR, '3', '4');
    await eventually(async () => ((await costs()).early === '0.007' ? true : undefined));
    expect((await costs()).recent).toBe('0.003');

    await put(now - 2 * HOUR, '5', '5'); // a correction of the same version
    await eventually(async () => ((await costs()).recent === '0.01' ? true : undefined));

    const [derived] = await fx.sql<{ cost: string; unpriced: number }>(
      'select trim_scale(sum(cost))::text as cost, sum(unpriced_requests)::int as unpriced from usage_hourly where bot_id = ?',
      [bot],
    );
    expect(derived).toEqual({ cost: '0.017', unpriced: 0 });
    const listed = await prices.list({ actor: fx.admin, model: `late-${bot}`, limit: 10 });
    expect(listed.items.map((p) => [p.effective_from, p.input_per_million])).toEqual([
      [iso(now - 2 * HOUR), '5'],
      [iso(now - 4 * HOUR), '3'],
    ]);
  });

  it('refuses a price change from anyone but an administrator', async () => {
    await expect(
      fx.app.get(PricesService).put({ type: 'user', id: randomUUID(), is_admin: false }, []),
    ).rejects.toMatchObject({ code: 'FORBIDDEN' });
  });
});

describe(BudgetsService.name, () => {
  const tokensEvent = (
    bot: string,
    id: string,
    input: number,
    extra: Partial<UsageEventInput> = {},
  ): UsageEventInput => ({
    request_id: id,
    bot_id: bot,
    status: 'completed',
    input_tokens: input,
    started_at: iso(Date.now() - 60_000),
    ...extra,
  });

  it('announces a crossed token budget once per period, and quota survives Redis losing its counters', async () => {
    const bot = await fx.bot('budget');
    const budgets = fx.app.get(BudgetsService);
    await budgets.put(fx.admin, bot, { period: 'day', max_tokens: 1000, currency: 'USD' });
    const before = await fx.domainCount('evt.usage.budget_exceeded');
    const used = async (n: number) =>
      eventually(async () => {
        const q = await budgets.quota(bot);
        return q.used_tokens === n ? q : undefined;
      });

    await fx.publish(tokensEvent(bot, 'b1', 600));
    expect(await used(600)).toMatchObject({ period: 'day', max_tokens: 1000, remaining_tokens: 400, exceeded: false });
    await fx.publish(tokensEvent(bot, 'b2', 500));
    const crossed = await used(1100);
    expect(crossed).toMatchObject({
      remaining_tokens: 0,
      exceeded: true,
      period_start: periodOf('day', new Date()).start.toISOString(),
    });
    await eventually(async () =>
      (await fx.domainCount('evt.usage.budget_exceeded')) === before + 1 ? true : undefined,
    );
    await fx.publish(tokensEvent(bot, 'b3', 100));
    await used(1200);
    await new Promise((r) => setTimeout(r, 700));
    expect(await fx.domainCount('evt.usage.budget_exceeded')).toBe(before + 1);

    const redis = fx.app.get<Redis>(REDIS);
    const key = fx.app.get(QuotaCounters).key(bot, 'day', periodOf('day', new Date()).start);
    expect(await redis.exists(key)).toBe(1);
    await redis.del(key);
    expect(await budgets.quota(bot)).toMatchObject({ used_tokens: 1200, exceeded: true });
    expect(Number(await redis.ttl(key))).toBeGreaterThan(0);
    // A rebuilt counter takes the totals of later commits.
    await fx.publish(tokensEvent(bot, 'b4', 1));
    expect(await used(1201)).toMatchObject({ exceeded: true });
  });

  it('keeps the quota exact while reads rebuild its counters beside ingestion', async () => {
    // A read that misses Redis rebuilds the counters from Postgres while batches commit and
    // bump them. A bump lost between the read and the rebuild, or counted twice, would leave
    // the quota off until the counters expire. Several bots' counters are rebuilt over and over
    // while their reports are ingested; after its last rebuild only the commits change each.
    const budgets = fx.app.get(BudgetsService);
    const counters = fx.app.get(QuotaCounters);
    const redis = fx.app.get<Redis>(REDIS);
    const bots = await Promise.all(Array.from({ length: 20 }, (_, i) => fx.bot(`budget-race-${i}`)));
    for (const bot of bots) await budgets.put(fx.admin, bot, { period: 'day', max_tokens: 1_000_000, currency: 'USD' });
    const day = periodOf('day', new Date());
    const month = periodOf('month', new Date());
    const read = (bot: string) =>
      Promise.all([counters.read(bot, 'day', day.start, day.end), counters.read(bot, 'month', month.start, month.end)]);
    // Slow answers widen the windows a loaded machine opens: Postgres' sums reach the rebuild
    // late, and a commit's bump follows the commit late.
    const pause = () => new Promise((r) => setTimeout(r, 2 + Math.random() * 15));
    const repository = fx.app.get(BudgetsRepository);
    const sums = repository.dailyTotals.bind(repository);
    const bump = counters.record.bind(counters);
    const slowSums = jest.spyOn(repository, 'dailyTotals').mockImplementation(async (...args) => {
      const rows = await sums(...args);
      await pause();
      return rows;
    });
    const slowBump = jest.spyOn(counters, 'record').mockImplementation(async (...args) => {
      await pause();
      return bump(...args);
    });
    // Each bot's counters are rebuilt until a round of its own, while its reports still flow.
    let round = 0;
    let rebuilds = 0;
    const readers = bots.map(async (bot, i) => {
      const last = 3 + (i % 8);
      while (round <= last) {
        await redis.del(counters.key(bot, 'day', day.start), counters.key(bot, 'month', month.start));
        await read(bot);
        rebuilds += 1;
      }
    });
    const total = new Map(bots.map((b) => [b, 0]));
    for (let i = 0; i < 12; i++) {
      // Each request is reported started and then completed: the second report moves its
      // tokens by a delta of either sign, so a bump lost or doubled shows in the sum.
      const reports = bots.flatMap((bot) => {
        const done = i % 3 === 0 ? 3 : 20 + i;
        total.set(bot, (total.get(bot) ?? 0) + done);
        return [
          tokensEvent(bot, `race-${i}`, 10 + (i % 7), { status: 'started' }),
          tokensEvent(bot, `race-${i}`, done, { status: 'completed' }),
        ];
      });
      round = i;
      if (i > 0) await new Promise((r) => setTimeout(r, 50));
      await Promise.all(reports.map((r) => fx.publish(r)));
    }
    round = Infinity;
    await Promise.all(readers);
    expect(rebuilds).toBeGreaterThan(bots.length * 10);
    const committed = async () => {
      const rows = await fx.sql<{ bot_id: string; t: string }>(
        'select bot_id, sum(total_tokens)::text as t from usage_daily where bot_id = any(?::uuid[]) group by bot_id',
        [`{${bots.join(',')}}`],
      );
      return rows.length === bots.length && rows.every((r) => Number(r.t) === total.get(r.bot_id)) ? true : undefined;
    };
    await eventually(committed, 30_000);
    slowSums.mockRestore();
    slowBump.mockRestore();
    // The last bumps follow the last commits at once; then every counter agrees with Postgres.
    const off = async () => {
      const wrong: string[] = [];
      for (const bot of bots) {
        const [d, m] = await read(bot);
        if (d.tokens !== total.get(bot) || m.tokens !== total.get(bot)) {
          wrong.push(`${bot}: day ${d.tokens}, month ${m.tokens}, committed ${total.get(bot)}`);
        }
      }
      return wrong;
    };
    const wrong = await eventually(async () => ((await off()).length === 0 ? [] : undefined), 5000).catch(off);
    expect(wrong).toEqual([]);
  });

  it('counts cost in the budget currency, reached at exactly the maximum', async () => {
    const bot = await fx.bot('budget-cost');
    await fx.app.get(PricesService).put(fx.admin, [
      {
        provider: 'acme',
        model: `ten-${bot}`,
        input_per_million: '10',
        output_per_million: '0',
        currency: 'USD',
        effective_from: iso(Date.now() - 24 * HOUR),
      },
    ]);
    const budgets = fx.app.get(BudgetsService);
    await budgets.put(fx.admin, bot, { period: 'month', max_cost: '0.01', currency: 'USD' });
    const before = await fx.domainCount('evt.usage.budget_exceeded');
    const priced = { provider: 'acme', model: `ten-${bot}` };
    await fx.publish(tokensEvent(bot, 'c1', 500, priced));
    const half = await eventually(async () => {
      const q = await budgets.quota(bot);
      return q.used_cost === '0.005' ? q : undefined;
    });
    expect(half).toMatchObject({ exceeded: false, remaining_cost: '0.005', period: 'month' });
    await fx.publish(tokensEvent(bot, 'c2', 500, priced));
    const full = await eventually(async () => {
      const q = await budgets.quota(bot);
      return q.used_cost === '0.01' ? q : undefined;
    });
    expect(full).toMatchObject({ exceeded: true, remaining_cost: '0' });
    await eventually(async () =>
      (await fx.domainCount('evt.usage.budget_exceeded')) === before + 1 ? true : undefined,
    );
  });

  it('announces at once a budget set below what is already used', async () => {
    const bot = await fx.bot('budget-late');
    await fx.publish(tokensEvent(bot, 'l1', 100));
    const budgets = fx.app.get(BudgetsService);
    await eventually(async () => ((await budgets.quota(bot)).used_tokens === 100 ? true : undefined));
    const before = await fx.domainCount('evt.usage.budget_exceeded');
    await budgets.put(fx.admin, bot, { period: 'month', max_tokens: 50, currency: 'USD' });
    await eventually(async () =>
      (await fx.domainCount('evt.usage.budget_exceeded')) === before + 1 ? true : undefined,
    );
  });

  it('answers usage.quota.check over NATS in plain JSON', async () => {
    const bot = await fx.bot('quota-nats');
    const reply = await fx.nats.connection.request(
      fx.nats.subject(QuotaCheckRpc.subject),
      JSON.stringify({ bot_id: bot }),
      {
        timeout: 5000,
        headers: natsHeaders(),
      },
    );
    expect(reply.headers?.has('Parley-Error') ?? false).toBe(false);
    expect(reply.json()).toMatchObject({
      bot_id: bot,
      period: 'month',
      used_tokens: 0,
      used_cost: '0',
      exceeded: false,
    });
    const missing = await fx.nats.connection.request(
      fx.nats.subject(QuotaCheckRpc.subject),
      JSON.stringify({ bot_id: randomUUID() }),
      { timeout: 5000 },
    );
    expect(missing.headers?.get('Parley-Error')).toBe('NOT_FOUND');
    expect(missing.json()).toMatchObject({ code: 'NOT_FOUND', status: 404, retryable: false });
  });
});
