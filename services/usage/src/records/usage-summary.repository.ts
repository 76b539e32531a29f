import { Inject, Injectable } from '@nestjs/common';
import { MikroORM } from '@mikro-orm/postgresql';
import { MAX_SUMMARY_ROWS, ParleyError, type UsageGroupKey } from '@parley/contracts';
import type { BotRestriction } from '../access/usage-access';
import { floorHour } from './rollup';
import type { TotalsRow } from './usage-records.repository';

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

export function restrictBots(sql: Sql, bots: BotRestriction, botId: string | undefined, alias = ''): void {
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

/** One group's totals in one currency, beside its group keys. */
export type SummaryRow = TotalsRow & Record<string, unknown>;

/** The whole UTC hours inside [from, to); undefined when there is none. */
function rollupWindow(from: Date, to: Date): { start: Date; end: Date } | undefined {
  const start = new Date(Math.ceil(from.getTime() / HOUR_MS) * HOUR_MS);
  const end = floorHour(to);
  return start < end ? { start, end } : undefined;
}

export interface SummaryQuery {
  bots: BotRestriction;
  bot_id?: string;
  user_id?: string;
  from: Date;
  to: Date;
  tz: string;
  group_by: UsageGroupKey[];
}

/**
 * The summary's SQL: the hourly rollup for the whole hours of the range and raw records for the
 * partial hours at its ends. Raw records alone serve what the rollup cannot: grouping or
 * filtering by user, and the UTC hours that do not fall into one local bucket of `tz` (grouped
 * by hour: every hour of a zone whose offset is not a whole number of hours; grouped by day:
 * the hours in such a zone that hold a local midnight). Postgres does all the work of the zone,
 * so the cost in the service follows the rows answered, not the range.
 */
@Injectable()
export class UsageSummaryRepository {
  constructor(@Inject(MikroORM) private readonly orm: MikroORM) {}

  /** Up to MAX_SUMMARY_ROWS × 2 + 1 rows, one per group and currency. */
  async summarize(q: SummaryQuery): Promise<SummaryRow[]> {
    const { bots, from, to } = q;
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
    return rows;
  }
}
