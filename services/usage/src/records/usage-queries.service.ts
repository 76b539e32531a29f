import { Inject, Injectable } from '@nestjs/common';
import { MikroORM } from '@mikro-orm/postgresql';
import type { z } from 'zod';
import {
  MAX_SUMMARY_ROWS,
  ParleyError,
  resolveRange,
  type CursorPage,
  type Principal,
  type UsageGroupKey,
  type UsageRecordView,
  type UsageRpc,
  type UsageSummaryItem,
  type UsageTotals,
} from '@parley/contracts';
import { Keyset } from '@parley/kit';
import { UsageAccess, type BotRestriction } from '../access/usage-access';
import { fromUnits, toUnits } from '../prices/decimal';
import { floorHour } from './rollup';
import {
  RECORDS_NEWEST_FIRST,
  UsageRecordsRepository,
  stateOf,
  type RecordRow,
  type TotalsRow,
} from './usage-records.repository';
import { localTimestamp } from './zones';

/** As the contract hands it over (the range resolved), or with its defaults still open (tests, jobs). */
type SummaryRequest = Omit<z.output<typeof UsageRpc.summary.request>, 'from' | 'to'> & { from?: string; to?: string };
type RecordsRequest = z.output<typeof UsageRpc.records.request>;

const HOUR_MS = 60 * 60 * 1000;

/** SQL text and its `?` parameters, kept in the order they appear. */
class Sql {
  readonly parts: string[] = [];
  readonly params: unknown[] = [];
  add(text: string, ...params: unknown[]): this {
    this.parts.push(text);
    this.params.push(...params);
    return this;
  }
  get text(): string {
    return this.parts.join(' ');
  }
}

function restrictBots(sql: Sql, bots: BotRestriction, botId: string | undefined, alias = ''): void {
  if (bots !== 'all') sql.add(`and ${alias}bot_id = any(?::uuid[])`, `{${bots.join(',')}}`);
  if (botId) sql.add(`and ${alias}bot_id = ?`, botId);
}

/** How each `group_by` key is selected from the combined source (`ts` is the row's time). */
function dimension(key: UsageGroupKey, tz: string): { select: string; params: unknown[] } {
  switch (key) {
    case 'bot':
      return { select: 'bot_id', params: [] };
    case 'model':
      return { select: 'model', params: [] };
    case 'provider':
      return { select: 'provider', params: [] };
    case 'channel':
      return { select: 'channel', params: [] };
    case 'user':
      return { select: 'user_id', params: [] };
    case 'status':
      return { select: 'status', params: [] };
    case 'hour':
      return { select: `date_trunc('hour', ts, ?) as hour`, params: [tz] };
    case 'day':
      return { select: `to_char(date_trunc('day', ts, ?) at time zone ?, 'YYYY-MM-DD') as day`, params: [tz, tz] };
  }
}

const OUTPUT_NAME: Record<UsageGroupKey, keyof UsageSummaryItem> = {
  bot: 'bot_id',
  model: 'model',
  provider: 'provider',
  channel: 'channel',
  user: 'user_id',
  status: 'status',
  hour: 'hour',
  day: 'day',
};

interface SummaryRow extends Record<string, unknown> {
  currency: string | null;
  requests: string;
  input_tokens: string;
  output_tokens: string;
  total_tokens: string;
  cost: string | null;
  unpriced_requests: string;
}

/**
 * Usage answers. Summaries come from the hourly rollup for the whole hours of the range and
 * from raw records for the partial hours at its ends. Raw records alone serve what the rollup
 * cannot: grouping or filtering by user, and the UTC hours that do not fall into one local
 * bucket of `tz` (grouped by hour: every hour of a zone whose offset is not a whole number of
 * hours; grouped by day: the hours in such a zone that hold a local midnight). Postgres does
 * all the work of the zone, so the cost in this process follows the rows answered, not the
 * range. Rollup rows whose requests all moved elsewhere (a request's `started` row once it
 * completed) net to zero and are not answered.
 */
@Injectable()
export class UsageQueries {
  constructor(
    @Inject(MikroORM) private readonly orm: MikroORM,
    @Inject(UsageAccess) private readonly access: UsageAccess,
    @Inject(UsageRecordsRepository) private readonly recordTable: UsageRecordsRepository,
    @Inject(Keyset) private readonly keyset: Keyset,
  ) {}

  async summary(actor: Principal, q: SummaryRequest) {
    const bots = await this.access.restriction(actor, { bot_id: q.bot_id, user_id: q.user_id });
    const { from, to } = resolveRange(q, Date.now());
    const answer = { from: from.toISOString(), to: to.toISOString(), tz: q.tz, group_by: q.group_by };
    if (bots !== 'all' && bots.length === 0) return { ...answer, items: [] };

    const byUser = q.group_by.includes('user') || Boolean(q.user_id);
    const byHour = q.group_by.includes('hour');
    const byDay = q.group_by.includes('day');
    const rollup = byUser ? undefined : rollupWindow(from, to);
    // The rollup's UTC hours that do not fall into one local bucket come from the records:
    // grouped by hour, those that do not start on a local hour (a zone with a half-hour
    // offset); grouped by day, those that hold a local midnight. Postgres finds them among
    // the window's hours (at most MAX_SUMMARY_RANGE_DAYS × 24).
    const splitWhere = byHour
      ? `date_trunc('hour', h at time zone ?) <> h at time zone ?`
      : byDay
        ? `(h at time zone ?)::time > time '23:00'`
        : undefined;
    const split = rollup && splitWhere ? { where: splitWhere, params: byHour ? [q.tz, q.tz] : [q.tz] } : undefined;

    const ctes = new Sql();
    if (rollup && split) {
      ctes.add(
        `split as materialized (
           select h from generate_series(?::timestamptz, ?::timestamptz - interval '1 hour', interval '1 hour') as g(h)
           where ${split.where}),`,
        rollup.start,
        rollup.end,
        ...split.params,
      );
    }
    const src = new Sql();
    const records = (where: string, ...params: unknown[]) => {
      src.add(
        `select r.bot_id, r.provider, r.model, r.channel, r.status, r.user_id, r.started_at as ts, r.currency, 1 as requests,
                r.input_tokens, r.output_tokens, r.total_tokens, coalesce(r.cost, 0) as cost,
                (r.price_id is null)::int as unpriced_requests
         ${where}`,
        ...params,
      );
      restrictBots(src, bots, q.bot_id, 'r.');
      if (q.user_id) src.add('and r.user_id = ?', q.user_id);
    };
    if (rollup) {
      src.add(
        `select bot_id, nullif(provider, '') as provider, nullif(model, '') as model, nullif(channel, '') as channel, status,
                null::uuid as user_id, hour as ts, nullif(currency, '') as currency, requests, input_tokens, output_tokens,
                total_tokens, cost, unpriced_requests
         from usage_hourly where hour >= ? and hour < ?`,
        rollup.start,
        rollup.end,
      );
      if (split) src.add('and hour not in (select h from split)');
      restrictBots(src, bots, q.bot_id);
      src.add('union all');
      records(
        `from usage_records r
         where ((r.started_at >= ? and r.started_at < ?) or (r.started_at >= ? and r.started_at < ?))`,
        from,
        rollup.start,
        rollup.end,
        to,
      );
      if (split) {
        src.add('union all');
        records(
          `from split s
           join usage_records r on r.started_at >= s.h and r.started_at < s.h + interval '1 hour'
           where true`,
        );
      }
    } else {
      records('from usage_records r where r.started_at >= ? and r.started_at < ?', from, to);
    }

    const dims = q.group_by.map((key) => dimension(key, q.tz));
    const sql = new Sql()
      .add(`with ${ctes.text} src as (${src.text}) select`, ...ctes.params, ...src.params)
      .add(dims.map((d) => `${d.select},`).join(' '), ...dims.flatMap((d) => d.params))
      .add(
        `currency, sum(requests)::text as requests, sum(input_tokens)::text as input_tokens,
         sum(output_tokens)::text as output_tokens, sum(total_tokens)::text as total_tokens,
         trim_scale(sum(cost))::text as cost, sum(unpriced_requests)::text as unpriced_requests
         from src group by ${[...dims.keys(), dims.length].map((i) => i + 1).join(', ')}
         having sum(requests) <> 0
         order by ${[...dims.keys()].map((i) => `${i + 1} nulls last, `).join('')}currency nulls last limit ?`,
        MAX_SUMMARY_ROWS * 2 + 1,
      );
    const rows = await this.orm.em
      .fork()
      .execute<SummaryRow[]>(sql.text, sql.params)
      .catch((error: unknown) => {
        // A zone this runtime knows and Postgres does not (their zone databases differ in age).
        if ((error as { code?: unknown }).code === '22023' && String(error).includes('time zone')) {
          throw new ParleyError('VALIDATION_FAILED', `tz: the database does not know the time zone ${q.tz}`, {
            errors: [{ field: 'tz', message: 'a time zone the database does not know' }],
          });
        }
        throw error;
      });
    const items = mergeUnpriced(rows, q.group_by, q.tz);
    if (rows.length > MAX_SUMMARY_ROWS * 2 || items.length > MAX_SUMMARY_ROWS) {
      throw new ParleyError('VALIDATION_FAILED', `more than ${MAX_SUMMARY_ROWS} rows: narrow from/to or group_by`, {
        errors: [{ field: 'group_by', message: `more than ${MAX_SUMMARY_ROWS} rows` }],
      });
    }
    return { ...answer, items };
  }

  /** Records newest first (by `started_at`, then bot and request id), with a keyset cursor. */
  async records(actor: Principal, q: RecordsRequest): Promise<CursorPage<UsageRecordView>> {
    const bots = await this.access.restriction(actor, q);
    const { from, to } = resolveRange(q, Date.now());
    // Bound as the client sent them: `to` left out means "now" on every page.
    const filters = {
      from: q.from,
      to: q.to,
      bot_id: q.bot_id,
      session_id: q.session_id,
      user_id: q.user_id,
      status: q.status,
    };
    return this.keyset.page(
      RECORDS_NEWEST_FIRST,
      q,
      { actor, filters },
      async (position) =>
        bots !== 'all' && bots.length === 0 ? [] : this.recordTable.listPage(bots, { ...filters, from, to }, position),
      { view: recordView, key: (r) => [new Date(r.started_at).toISOString(), r.bot_id, r.request_id] },
    );
  }

  /** Totals of one session's records; the caller has established that it may read the session. */
  async sessionTotals(sessionId: string): Promise<UsageTotals> {
    const rows = await this.recordTable.sessionTotals(sessionId);
    const costs = rows
      .filter((r) => r.currency !== null)
      .map((r) => ({ currency: String(r.currency), cost: fromUnits(toUnits(r.cost ?? '0')) }));
    const sum = (field: keyof TotalsRow) => rows.reduce((n, r) => n + Number(r[field] ?? 0), 0);
    return {
      requests: sum('requests'),
      input_tokens: sum('input_tokens'),
      output_tokens: sum('output_tokens'),
      total_tokens: sum('total_tokens'),
      cost: costs.length === 1 ? costs[0].cost : null,
      currency: costs.length === 1 ? costs[0].currency : null,
      costs,
      unpriced_requests: sum('unpriced_requests'),
    };
  }
}

/** The whole UTC hours inside [from, to); undefined when there is none. */
function rollupWindow(from: Date, to: Date): { start: Date; end: Date } | undefined {
  const start = new Date(Math.ceil(from.getTime() / HOUR_MS) * HOUR_MS);
  const end = floorHour(to);
  return start < end ? { start, end } : undefined;
}

/**
 * Rows split by currency. A group's unpriced requests join its one priced row when there is
 * exactly one (so `cost` covers the priced part and `unpriced_requests` says what is not);
 * alone, or beside several currencies, they are a row of their own with `currency` and
 * `cost` null.
 */
function mergeUnpriced(rows: SummaryRow[], keys: UsageGroupKey[], tz: string): UsageSummaryItem[] {
  const groups = new Map<string, UsageSummaryItem[]>();
  for (const row of rows) {
    const item: UsageSummaryItem = {
      requests: Number(row.requests),
      input_tokens: Number(row.input_tokens),
      output_tokens: Number(row.output_tokens),
      total_tokens: Number(row.total_tokens),
      cost: row.currency === null ? null : fromUnits(toUnits(row.cost ?? '0')),
      currency: row.currency,
      unpriced_requests: Number(row.unpriced_requests),
    };
    for (const key of keys) {
      const value = row[OUTPUT_NAME[key]];
      (item as Record<string, unknown>)[OUTPUT_NAME[key]] =
        key === 'hour' ? localTimestamp(new Date(value as string), tz) : ((value as string | null) ?? null);
    }
    const group = keys
      .map((k) =>
        String(row[OUTPUT_NAME[k]] instanceof Date ? (row[OUTPUT_NAME[k]] as Date).getTime() : row[OUTPUT_NAME[k]]),
      )
      .join('\u0000');
    groups.set(group, [...(groups.get(group) ?? []), item]);
  }
  const out: UsageSummaryItem[] = [];
  for (const items of groups.values()) {
    const priced = items.filter((i) => i.currency !== null);
    const unpriced = items.find((i) => i.currency === null);
    if (unpriced && priced.length === 1) {
      const [target] = priced;
      target.requests += unpriced.requests;
      target.input_tokens += unpriced.input_tokens;
      target.output_tokens += unpriced.output_tokens;
      target.total_tokens += unpriced.total_tokens;
      target.unpriced_requests += unpriced.unpriced_requests;
      out.push(target);
    } else {
      out.push(...items);
    }
  }
  return out;
}

export function recordView(row: RecordRow): UsageRecordView {
  const s = stateOf(row);
  return {
    bot_id: s.botId,
    request_id: s.requestId,
    session_id: s.sessionId,
    user_id: s.userId,
    channel: s.channel,
    status: s.status,
    provider: s.provider,
    model: s.model,
    input_tokens: s.inputTokens,
    output_tokens: s.outputTokens,
    total_tokens: s.totalTokens,
    started_at: s.startedAt.toISOString(),
    completed_at: s.completedAt ? s.completedAt.toISOString() : null,
    cost: s.cost,
    currency: s.currency,
    price_id: s.priceId,
    created_at: s.createdAt.toISOString(),
    updated_at: s.updatedAt.toISOString(),
  };
}
