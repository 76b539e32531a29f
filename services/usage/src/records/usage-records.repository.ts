import { Inject, Injectable } from '@nestjs/common';
import { MikroORM, type EntityManager } from '@mikro-orm/postgresql';
import { CompiledQuery } from 'kysely';
import { KIT_OPTIONS, type KitOptions } from '@parley/kit';
import { keysetSql, type KeysetList, type KeyValues } from '@parley/kit/database';
import type { BotRestriction } from '../access/usage-access';
import { Locks } from '../locks';
import { fromUnits } from '../prices/decimal';
import { PRICES_STAMP_SQL } from '../prices/prices.repository';
import type { RecordState } from './record-state';
import { isoText, type DailyTotal, type RollupDeltas } from './rollup';

/** Records newest first: by `started_at`, then bot and request id. */
export const RECORDS_NEWEST_FIRST: KeysetList = {
  name: 'usage-records',
  keys: [
    { column: 'started_at', type: 'timestamp', order: 'desc' },
    { column: 'bot_id', type: 'uuid', order: 'desc' },
    { column: 'request_id', type: 'text', order: 'desc' },
  ],
};

/** A usage record as SQL answers it (RECORD_COLUMNS_SQL). */
export interface RecordRow {
  bot_id: string;
  request_id: string;
  session_id: string | null;
  user_id: string | null;
  channel: string | null;
  status: RecordState['status'];
  provider: string | null;
  model: string | null;
  input_tokens: string | number;
  output_tokens: string | number;
  total_tokens: string | number;
  started_at: Date;
  completed_at: Date | null;
  cost: string | null;
  currency: string | null;
  price_id: string | null;
  created_at: Date;
  updated_at: Date;
}

export const RECORD_COLUMNS_SQL = `bot_id, request_id, session_id, user_id, channel, status, provider, model, input_tokens,
  output_tokens, total_tokens, started_at, completed_at, trim_scale(cost)::text as cost, currency, price_id, created_at, updated_at`;

export function stateOf(row: RecordRow): RecordState {
  return {
    botId: row.bot_id,
    requestId: row.request_id,
    sessionId: row.session_id,
    userId: row.user_id,
    channel: row.channel,
    status: row.status,
    provider: row.provider,
    model: row.model,
    inputTokens: Number(row.input_tokens),
    outputTokens: Number(row.output_tokens),
    totalTokens: Number(row.total_tokens),
    startedAt: new Date(row.started_at),
    completedAt: row.completed_at ? new Date(row.completed_at) : null,
    cost: row.cost,
    currency: row.currency,
    priceId: row.price_id,
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
  };
}

/** The columns of a usage record as `recordsJson` writes them, by position, with their SQL types. */
const RECORD_FIELDS: [column: string, type: string][] = [
  ['bot_id', 'uuid'],
  ['request_id', 'text'],
  ['session_id', 'uuid'],
  ['user_id', 'uuid'],
  ['channel', 'text'],
  ['status', 'text'],
  ['provider', 'text'],
  ['model', 'text'],
  ['input_tokens', 'bigint'],
  ['output_tokens', 'bigint'],
  ['total_tokens', 'bigint'],
  ['started_at', 'timestamptz'],
  ['completed_at', 'timestamptz'],
  ['cost', 'numeric'],
  ['currency', 'text'],
  ['price_id', 'uuid'],
  ['created_at', 'timestamptz'],
  ['updated_at', 'timestamptz'],
];
const RECORD_COLUMNS_LIST = RECORD_FIELDS.map(([column]) => column).join(', ');

/**
 * The rows of a `recordsJson` parameter: an array of arrays, read by position. (Objects read by
 * `jsonb_to_recordset` took PostgreSQL three times as long for a batch of 500, half of it the
 * repeated key names.)
 */
function recordsFrom(param: string): string {
  const columns = RECORD_FIELDS.map(([column, type], i) =>
    type === 'text' ? `r->>${i} as ${column}` : `(r->>${i})::${type} as ${column}`,
  );
  return `select ${columns.join(', ')} from jsonb_array_elements(${param}::jsonb) r`;
}

/**
 * Takes the pricing lock (shared), inserts the records that do not exist yet (as a batch
 * would make them from nothing) and answers which were inserted, and the others as they
 * stand, locked, in key order.
 */
const CLAIM_SQL = `
with pricing as materialized (
  select pg_advisory_xact_lock_shared(hashtext($1)) as locked
), incoming as (
  ${recordsFrom('$2')}
), inserted as (
  insert into usage_records (${RECORD_COLUMNS_LIST})
  select ${RECORD_COLUMNS_LIST} from incoming, pricing order by bot_id, request_id
  on conflict (bot_id, request_id) do nothing
  returning bot_id, request_id
), existing as (
  -- Only what was not inserted is looked up (usually nothing): no probe per new record.
  select ${RECORD_COLUMNS_SQL} from usage_records r, pricing
  where (r.bot_id, r.request_id) in (select bot_id, request_id from incoming except all select bot_id, request_id from inserted)
  order by r.bot_id, r.request_id for update of r
)
select (select count(*) from inserted)::int as inserted,
       coalesce((select json_agg(e) from existing e), '[]'::json) as existing`;

/**
 * Writes the changes to existing records and every rollup delta, and answers which of the
 * batch's bots have a budget and the price table's stamp, in one statement.
 */
const WRITE_SQL = `
with changed as (
  update usage_records u set session_id = i.session_id, user_id = i.user_id, channel = i.channel, status = i.status,
    provider = i.provider, model = i.model, input_tokens = i.input_tokens, output_tokens = i.output_tokens,
    total_tokens = i.total_tokens, completed_at = i.completed_at, cost = i.cost, currency = i.currency,
    price_id = i.price_id, updated_at = i.updated_at
  from (${recordsFrom('$1')}) as i
  where u.bot_id = i.bot_id and u.request_id = i.request_id
  returning 1
), hourly as (
  insert into usage_hourly (hour, bot_id, provider, model, channel, status, currency, requests, input_tokens,
    output_tokens, total_tokens, cost, unpriced_requests)
  select * from jsonb_to_recordset($2::jsonb) as h(hour timestamptz, bot_id uuid, provider text, model text,
    channel text, status text, currency text, requests bigint, input_tokens bigint, output_tokens bigint,
    total_tokens bigint, cost numeric, unpriced_requests bigint)
  on conflict (hour, bot_id, provider, model, channel, status, currency) do update set
    requests = usage_hourly.requests + excluded.requests,
    input_tokens = usage_hourly.input_tokens + excluded.input_tokens,
    output_tokens = usage_hourly.output_tokens + excluded.output_tokens,
    total_tokens = usage_hourly.total_tokens + excluded.total_tokens,
    cost = usage_hourly.cost + excluded.cost,
    unpriced_requests = usage_hourly.unpriced_requests + excluded.unpriced_requests
  returning 1
), daily as (
  insert into usage_daily (bot_id, day, currency, requests, total_tokens, cost, revision)
  select d.*, 1 from jsonb_to_recordset($3::jsonb) as d(bot_id uuid, day date, currency text, requests bigint,
    total_tokens bigint, cost numeric)
  on conflict (bot_id, day, currency) do update set
    requests = usage_daily.requests + excluded.requests,
    total_tokens = usage_daily.total_tokens + excluded.total_tokens,
    cost = usage_daily.cost + excluded.cost,
    revision = usage_daily.revision + 1
  returning bot_id, day, currency, total_tokens, cost, revision
)
select (select count(*) from changed)::int as changed, (select count(*) from hourly)::int as hourly,
       coalesce((select json_agg(json_build_array(bot_id, day, currency, revision::text, total_tokens::text,
         cost::text)) from daily), '[]'::json) as daily,
       array(select bot_id::text from usage_budgets
             where bot_id = any($4::uuid[]) and (max_tokens is not null or max_cost is not null)) as budgeted,
       ${PRICES_STAMP_SQL} as stamp`;

/**
 * Records as `recordsFrom` reads them: each an array in RECORD_FIELDS' order. A batch's records
 * share their `created_at` and `updated_at` (the batch's clock), so the text of the last instant
 * written is reused.
 */
function recordsJson(records: RecordState[]): string {
  let lastTime = NaN;
  let lastText = '';
  const iso = (d: Date) => {
    const time = d.getTime();
    if (time !== lastTime) {
      lastTime = time;
      lastText = d.toISOString();
    }
    return lastText;
  };
  return JSON.stringify(
    records.map((r) => [
      r.botId,
      r.requestId,
      r.sessionId,
      r.userId,
      r.channel,
      r.status,
      r.provider,
      r.model,
      r.inputTokens,
      r.outputTokens,
      r.totalTokens,
      isoText(r.startedAt),
      r.completedAt ? isoText(r.completedAt) : null,
      r.cost,
      r.currency,
      r.priceId,
      iso(r.createdAt),
      iso(r.updatedAt),
    ]),
  );
}

/** The totals of one session's records, per currency. */
export interface TotalsRow {
  currency: string | null;
  requests: string;
  input_tokens: string;
  output_tokens: string;
  total_tokens: string;
  cost: string | null;
  unpriced_requests: string;
}

/**
 * Usage records and what is derived from them in the same transaction (the hourly rollup and
 * the daily per-bot counters). Methods that take an EntityManager run in the caller's
 * transaction. The summary's statements are built in UsageQueries.
 */
@Injectable()
export class UsageRecordsRepository {
  private readonly pricingLock: string;

  constructor(
    @Inject(MikroORM) private readonly orm: MikroORM,
    @Inject(KIT_OPTIONS) options: KitOptions,
  ) {
    this.pricingLock = Locks.pricing(options);
  }

  /** Runs a statement on the transaction's connection with bind parameters (large JSON stays out of the SQL text). */
  private async run<T>(tx: EntityManager, sql: string, params: unknown[]): Promise<T[]> {
    const trx = tx.getTransactionContext<{ executeQuery(q: CompiledQuery): Promise<{ rows: unknown[] }> }>();
    if (!trx) throw new Error('the ledger writes inside a transaction');
    return (await trx.executeQuery(CompiledQuery.raw(sql, params))).rows as T[];
  }

  /**
   * Takes the pricing lock (shared), inserts `fresh` where no record exists yet, and locks and
   * answers the records that do (the statement's snapshot cannot see its own inserts).
   */
  async claim(tx: EntityManager, fresh: RecordState[]): Promise<{ inserted: number; existing: RecordState[] }> {
    const [row] = await this.run<{ inserted: number; existing: RecordRow[] }>(tx, CLAIM_SQL, [
      this.pricingLock,
      recordsJson(fresh),
    ]);
    return { inserted: row.inserted, existing: row.existing.map(stateOf) };
  }

  /**
   * Updates `updates` (records that exist) and adds the rollup deltas; answers how many records
   * changed, which of `bots` have a budget, the price table's stamp, and the daily totals the
   * deltas left.
   */
  async write(
    tx: EntityManager,
    updates: RecordState[],
    deltas: RollupDeltas,
    bots: string[],
  ): Promise<{ changed: number; budgeted: string[]; stamp: string; daily: DailyTotal[] }> {
    const hourly = deltas.hourlyRows().map(({ costUnits, hour, ...d }) => ({
      hour: hour.toISOString(),
      bot_id: d.botId,
      provider: d.provider,
      model: d.model,
      channel: d.channel,
      status: d.status,
      currency: d.currency,
      requests: d.requests,
      input_tokens: d.inputTokens,
      output_tokens: d.outputTokens,
      total_tokens: d.totalTokens,
      cost: fromUnits(costUnits),
      unpriced_requests: d.unpricedRequests,
    }));
    const daily = deltas.dailyRows().map((d) => ({
      bot_id: d.botId,
      day: d.day,
      currency: d.currency,
      requests: d.requests,
      total_tokens: d.totalTokens,
      cost: fromUnits(d.costUnits),
    }));
    const [result] = await this.run<{
      changed: number;
      budgeted: string[];
      stamp: string;
      daily: [string, string, string, string, string, string][];
    }>(tx, WRITE_SQL, [recordsJson(updates), JSON.stringify(hourly), JSON.stringify(daily), `{${bots.join(',')}}`]);
    return {
      ...result,
      daily: result.daily.map(([botId, day, currency, revision, tokens, cost]) => ({
        botId,
        day,
        currency,
        revision,
        tokens,
        cost,
      })),
    };
  }

  /**
   * The next records of a model to re-price, in key order, locked: from `fromAt` until
   * `untilAt`, after the position reached.
   */
  async repricingChunk(
    tx: EntityManager,
    job: {
      provider: string;
      model: string;
      fromAt: Date;
      untilAt?: Date | null;
      afterStartedAt?: Date | null;
      afterBotId?: string | null;
      afterRequestId?: string | null;
    },
    limit: number,
  ): Promise<RecordState[]> {
    const params: unknown[] = [job.provider, job.model, job.fromAt];
    let where = 'provider = ? and model = ? and started_at >= ?';
    if (job.untilAt) {
      where += ' and started_at < ?';
      params.push(job.untilAt);
    }
    if (job.afterStartedAt && job.afterBotId && job.afterRequestId) {
      where += ' and (started_at, bot_id, request_id) > (?, ?, ?)';
      params.push(job.afterStartedAt, job.afterBotId, job.afterRequestId);
    }
    const rows = await tx.execute<RecordRow[]>(
      `select ${RECORD_COLUMNS_SQL} from usage_records where ${where}
         order by started_at, bot_id, request_id limit ${limit} for update`,
      params,
    );
    return rows.map(stateOf);
  }

  /** Records started in [from, to) of the bots and filters given, after a position of RECORDS_NEWEST_FIRST. */
  async listPage(
    bots: BotRestriction,
    filters: { from: Date; to: Date; bot_id?: string; session_id?: string; user_id?: string; status?: string },
    position: { after?: KeyValues; take: number },
  ): Promise<RecordRow[]> {
    const parts = [`select ${RECORD_COLUMNS_SQL} from usage_records where started_at >= ? and started_at < ?`];
    const params: unknown[] = [filters.from, filters.to];
    const and = (sql: string, ...values: unknown[]) => {
      parts.push(sql);
      params.push(...values);
    };
    if (bots !== 'all') and('and bot_id = any(?::uuid[])', `{${bots.join(',')}}`);
    if (filters.bot_id) and('and bot_id = ?', filters.bot_id);
    if (filters.session_id) and('and session_id = ?', filters.session_id);
    if (filters.user_id) and('and user_id = ?', filters.user_id);
    if (filters.status) and('and status = ?', filters.status);
    if (position.after) {
      const after = keysetSql(RECORDS_NEWEST_FIRST, position.after);
      and(`and ${after.sql}`, ...after.params);
    }
    and('order by started_at desc, bot_id desc, request_id desc limit ?', position.take);
    return this.orm.em.fork().execute<RecordRow[]>(parts.join(' '), params);
  }

  /** Totals of one session's records, per currency (unpriced: currency null). */
  sessionTotals(sessionId: string): Promise<TotalsRow[]> {
    return this.orm.em.fork().execute<TotalsRow[]>(
      `select currency, count(*)::text as requests, sum(input_tokens)::text as input_tokens,
              sum(output_tokens)::text as output_tokens, sum(total_tokens)::text as total_tokens,
              trim_scale(sum(cost))::text as cost, count(*) filter (where price_id is null)::text as unpriced_requests
       from usage_records where session_id = ? group by currency order by currency nulls last`,
      [sessionId],
    );
  }
}
