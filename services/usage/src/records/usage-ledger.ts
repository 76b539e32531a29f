import { Inject, Injectable } from '@nestjs/common';
import type { EntityManager } from '@mikro-orm/postgresql';
import { CompiledQuery } from 'kysely';
import { KIT_OPTIONS, serviceSchema, type KitOptions } from '@parley/kit';
import { fromUnits } from '../prices/decimal';
import { PriceBook } from '../prices/price-book';
import type { RecordState } from './record-state';
import { RollupDeltas } from './rollup';

export interface RecordChange {
  before: RecordState | undefined;
  after: RecordState;
}

/** A concurrent writer changed what this transaction read (a record, the prices): run it again. */
export class RaceLost extends Error {
  readonly code = '40001';
  constructor(what: string) {
    super(`lost a race: ${what}`);
  }
}

const keyOf = (r: { botId: string; requestId: string }) => `${r.botId}\u0000${r.requestId}`;

interface RecordRow {
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

/** Changes whenever a price version is stored or corrected. */
const PRICES_STAMP_SQL = `(select count(*)::text || ':' || coalesce(max(updated_at)::text, '') from usage_prices)`;

const RECORD_TYPES = `bot_id uuid, request_id text, session_id uuid, user_id uuid, channel text, status text,
  provider text, model text, input_tokens bigint, output_tokens bigint, total_tokens bigint, started_at timestamptz,
  completed_at timestamptz, cost numeric, currency text, price_id uuid, created_at timestamptz, updated_at timestamptz`;
const RECORD_COLUMNS_LIST = `bot_id, request_id, session_id, user_id, channel, status, provider, model, input_tokens,
  output_tokens, total_tokens, started_at, completed_at, cost, currency, price_id, created_at, updated_at`;

/**
 * Takes the pricing lock (shared), inserts the records that do not exist yet (as a batch
 * would make them from nothing) and answers which were inserted, and the others as they
 * stand, locked, in key order.
 */
const CLAIM_SQL = `
with pricing as materialized (
  select pg_advisory_xact_lock_shared(hashtext($1)) as locked
), incoming as (
  select * from jsonb_to_recordset($2::jsonb) as r(${RECORD_TYPES})
), inserted as (
  insert into usage_records (${RECORD_COLUMNS_LIST})
  select ${RECORD_COLUMNS_LIST} from incoming, pricing order by bot_id, request_id
  on conflict (bot_id, request_id) do nothing
  returning 1
), existing as (
  select ${RECORD_COLUMNS_SQL} from usage_records r, pricing
  where (r.bot_id, r.request_id) in (select bot_id, request_id from incoming)
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
  from jsonb_to_recordset($1::jsonb) as i(${RECORD_TYPES})
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
  insert into usage_daily (bot_id, day, currency, requests, total_tokens, cost)
  select * from jsonb_to_recordset($3::jsonb) as d(bot_id uuid, day date, currency text, requests bigint,
    total_tokens bigint, cost numeric)
  on conflict (bot_id, day, currency) do update set
    requests = usage_daily.requests + excluded.requests,
    total_tokens = usage_daily.total_tokens + excluded.total_tokens,
    cost = usage_daily.cost + excluded.cost
  returning 1
)
select (select count(*) from changed)::int as changed, (select count(*) from hourly)::int as hourly,
       (select count(*) from daily)::int as daily,
       array(select bot_id::text from usage_budgets
             where bot_id = any($4::uuid[]) and (max_tokens is not null or max_cost is not null)) as budgeted,
       ${PRICES_STAMP_SQL} as stamp`;

const recordJson = (r: RecordState) => ({
  bot_id: r.botId,
  request_id: r.requestId,
  session_id: r.sessionId,
  user_id: r.userId,
  channel: r.channel,
  status: r.status,
  provider: r.provider,
  model: r.model,
  input_tokens: r.inputTokens,
  output_tokens: r.outputTokens,
  total_tokens: r.totalTokens,
  started_at: r.startedAt.toISOString(),
  completed_at: r.completedAt ? r.completedAt.toISOString() : null,
  cost: r.cost,
  currency: r.currency,
  price_id: r.priceId,
  created_at: r.createdAt.toISOString(),
  updated_at: r.updatedAt.toISOString(),
});

export interface PricedBook {
  stamp: string;
  book: PriceBook;
}

/**
 * Writes usage records together with what is derived from them (the hourly rollup and the
 * daily per-bot counters) inside the caller's transaction, so they never disagree. A batch
 * takes two statements: `claim` (insert what is new, lock what exists) and `write` (update,
 * rollup, counters); prices come from memory and are checked to be current in `write`.
 */
@Injectable()
export class UsageLedger {
  private readonly pricingLockKey: string;
  private cached: PricedBook | undefined;

  constructor(@Inject(KIT_OPTIONS) options: KitOptions) {
    this.pricingLockKey = `parley:${serviceSchema(options.service, options.config)}:prices`;
  }

  /**
   * Writers that price records hold this lock shared; storing prices holds it exclusively,
   * so a price change waits for in-flight batches and every later batch sees it.
   */
  async lockPricing(tx: EntityManager, mode: 'shared' | 'exclusive'): Promise<void> {
    const fn = mode === 'shared' ? 'pg_advisory_xact_lock_shared' : 'pg_advisory_xact_lock';
    await tx.execute(`select ${fn}(hashtext(?))`, [this.pricingLockKey]);
  }

  /** The price versions as last read (read now if never). `write` tells when they are out of date. */
  async book(em: EntityManager): Promise<PricedBook> {
    if (this.cached) return this.cached;
    const [row] = await em.execute<{ stamp: string }[]>(`select ${PRICES_STAMP_SQL} as stamp`);
    return this.load(em, row.stamp);
  }

  /** The price versions in force, for a transaction that holds the pricing lock. */
  async prices(tx: EntityManager): Promise<PricedBook> {
    const [row] = await tx.execute<{ stamp: string }[]>(`select ${PRICES_STAMP_SQL} as stamp`);
    return this.cached?.stamp === row.stamp ? this.cached : this.load(tx, row.stamp);
  }

  private async load(em: EntityManager, stamp: string): Promise<PricedBook> {
    const rows = await em.execute<
      {
        id: string;
        provider: string;
        model: string;
        input: string;
        output: string;
        currency: string;
        effective_from: Date;
      }[]
    >(
      `select id, provider, model, trim_scale(input_per_million)::text as input,
              trim_scale(output_per_million)::text as output, currency, effective_from from usage_prices`,
    );
    const book = new PriceBook(
      rows.map((r) => ({
        id: r.id,
        provider: r.provider,
        model: r.model,
        inputPerMillion: r.input,
        outputPerMillion: r.output,
        currency: r.currency,
        effectiveFrom: new Date(r.effective_from),
      })),
    );
    this.cached = { stamp, book };
    return this.cached;
  }

  /**
   * Takes the pricing lock, inserts `fresh` (each record as the batch makes it from nothing)
   * where no record exists yet, and locks and answers the records that do.
   */
  async claim(
    tx: EntityManager,
    fresh: RecordState[],
  ): Promise<{ inserted: Set<string>; existing: Map<string, RecordState> }> {
    const [row] = await this.run<{ inserted: number; existing: RecordRow[] }>(tx, CLAIM_SQL, [
      this.pricingLockKey,
      JSON.stringify(fresh.map(recordJson)),
    ]);
    const existing = new Map<string, RecordState>();
    for (const r of row.existing) {
      const state = stateOf(r);
      existing.set(keyOf(state), state);
    }
    if (row.inserted + existing.size < fresh.length) {
      throw new RaceLost(
        `${fresh.length - row.inserted - existing.size} usage records were created by a concurrent writer`,
      );
    }
    // What was not found existing was inserted: the statement's snapshot cannot see its own inserts.
    const inserted = new Set(fresh.map(keyOf).filter((id) => !existing.has(id)));
    return { inserted, existing };
  }

  /** Runs a statement on the transaction's connection with bind parameters (large JSON stays out of the SQL text). */
  private async run<T>(tx: EntityManager, sql: string, params: unknown[]): Promise<T[]> {
    const trx = tx.getTransactionContext<{ executeQuery(q: CompiledQuery): Promise<{ rows: unknown[] }> }>();
    if (!trx) throw new Error('the ledger writes inside a transaction');
    return (await trx.executeQuery(CompiledQuery.raw(sql, params))).rows as T[];
  }

  /**
   * Writes the changes (records in `created` are already inserted by `claim`) with their
   * rollup deltas; returns the deltas and the changed bots that have a budget. Throws
   * RaceLost, after refreshing the prices, if they changed since `book` was read.
   */
  async write(
    tx: EntityManager,
    changes: RecordChange[],
    prices: PricedBook,
  ): Promise<{ deltas: RollupDeltas; budgeted: string[] }> {
    const deltas = new RollupDeltas();
    for (const c of changes) deltas.add(c.before, c.after);
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
    const updates = changes.filter((c) => c.before).map((c) => recordJson(c.after));
    const bots = [...new Set(changes.map((c) => c.after.botId))];
    const [result] = await this.run<{ changed: number; budgeted: string[]; stamp: string }>(tx, WRITE_SQL, [
      JSON.stringify(updates),
      JSON.stringify(hourly),
      JSON.stringify(daily),
      `{${bots.join(',')}}`,
    ]);
    if (result.stamp !== prices.stamp) {
      await this.load(tx, result.stamp);
      throw new RaceLost('the prices changed while the batch was priced');
    }
    if (result.changed !== updates.length) {
      throw new Error(`expected to change ${updates.length} usage records, changed ${result.changed}`);
    }
    return { deltas, budgeted: result.budgeted };
  }
}

export { keyOf as recordKey };
