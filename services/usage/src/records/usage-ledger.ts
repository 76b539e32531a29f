import { Inject, Injectable } from '@nestjs/common';
import { raw, type EntityManager } from '@mikro-orm/postgresql';
import { KIT_OPTIONS, serviceSchema, type KitOptions } from '@parley/kit';
import { fromUnits } from '../prices/decimal';
import { PriceEntity } from '../prices/price.entity';
import { PriceBook } from '../prices/price-book';
import type { RecordState } from './record-state';
import { RollupDeltas } from './rollup';
import { UsageDailyEntity, UsageHourlyEntity, UsageRecordEntity } from './usage-record.entity';

export interface RecordChange {
  before: RecordState | undefined;
  after: RecordState;
}

/** Another writer created a record this transaction meant to create: run the transaction again. */
export class RaceLost extends Error {
  readonly code = '40001';
  constructor(what: string) {
    super(`a concurrent writer created ${what} first`);
  }
}

/** Postgres allows 65535 bind parameters per statement; stay well under it. */
export function chunked<T>(rows: T[], columns: number, most = 1000): T[][] {
  const size = Math.max(1, Math.min(most, Math.floor(60_000 / columns)));
  const out: T[][] = [];
  for (let i = 0; i < rows.length; i += size) out.push(rows.slice(i, i + size));
  return out;
}

const RECORD_COLUMNS = 18;
const MERGED_FIELDS = [
  'sessionId',
  'userId',
  'channel',
  'status',
  'provider',
  'model',
  'inputTokens',
  'outputTokens',
  'totalTokens',
  'completedAt',
  'cost',
  'currency',
  'priceId',
  'updatedAt',
] as const;

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

/**
 * Writes usage records together with what is derived from them (the hourly rollup and the
 * daily per-bot counters) inside the caller's transaction, so they never disagree.
 */
@Injectable()
export class UsageLedger {
  private readonly pricingLockKey: string;

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

  /** The current records of these keys, locked until the transaction ends (in key order: no deadlocks). */
  async lockRecords(
    tx: EntityManager,
    keys: { botId: string; requestId: string }[],
  ): Promise<Map<string, RecordState>> {
    const found = new Map<string, RecordState>();
    if (keys.length === 0) return found;
    const rows = await tx.execute<RecordRow[]>(
      `select ${RECORD_COLUMNS_SQL} from usage_records
       where (bot_id, request_id) in (select k.bot_id, k.request_id from jsonb_to_recordset(?::jsonb) as k(bot_id uuid, request_id text))
       order by bot_id, request_id for update`,
      [JSON.stringify(keys.map((k) => ({ bot_id: k.botId, request_id: k.requestId })))],
    );
    for (const row of rows) {
      const state = stateOf(row);
      found.set(keyOf(state), state);
    }
    return found;
  }

  /** Every price version of the models these records name. */
  async priceBook(tx: EntityManager, records: { provider: string | null; model: string | null }[]): Promise<PriceBook> {
    const pairs = new Map<string, { provider: string; model: string }>();
    for (const r of records) {
      if (r.provider && r.model) pairs.set(`${r.provider}\u0000${r.model}`, { provider: r.provider, model: r.model });
    }
    if (pairs.size === 0) return new PriceBook([]);
    const list = [...pairs.values()];
    const rows = await tx.find(PriceEntity, { $or: list.map((p) => ({ provider: p.provider, model: p.model })) });
    return new PriceBook(
      rows.map((r) => ({
        id: r.id,
        provider: r.provider,
        model: r.model,
        inputPerMillion: r.inputPerMillion,
        outputPerMillion: r.outputPerMillion,
        currency: r.currency,
        effectiveFrom: r.effectiveFrom,
      })),
    );
  }

  /** Persists the changes and their rollup deltas; returns the deltas (for counters and budgets). */
  async write(tx: EntityManager, changes: RecordChange[]): Promise<RollupDeltas> {
    const deltas = new RollupDeltas();
    const created = changes.filter((c) => !c.before).map((c) => c.after);
    const changed = changes.filter((c) => c.before).map((c) => c.after);
    for (const c of changes) deltas.add(c.before, c.after);

    for (const rows of chunked(created, RECORD_COLUMNS)) {
      const inserted = await tx
        .createQueryBuilder(UsageRecordEntity)
        .insert(rows)
        .onConflict(['botId', 'requestId'])
        .ignore()
        .returning(['botId', 'requestId'])
        .execute('all');
      if (inserted.length !== rows.length) throw new RaceLost(`${rows.length - inserted.length} usage records`);
    }
    for (const rows of chunked(changed, RECORD_COLUMNS)) {
      await tx
        .createQueryBuilder(UsageRecordEntity)
        .insert(rows)
        .onConflict(['botId', 'requestId'])
        .merge([...MERGED_FIELDS])
        .execute('run');
    }

    const hourly = deltas.hourlyRows().map(({ costUnits, ...d }) => ({ ...d, cost: fromUnits(costUnits) }));
    for (const rows of chunked(hourly, 13)) {
      await tx
        .createQueryBuilder(UsageHourlyEntity)
        .insert(rows)
        .onConflict(['hour', 'botId', 'provider', 'model', 'channel', 'status', 'currency'])
        .merge({
          requests: raw('usage_hourly.requests + excluded.requests'),
          inputTokens: raw('usage_hourly.input_tokens + excluded.input_tokens'),
          outputTokens: raw('usage_hourly.output_tokens + excluded.output_tokens'),
          totalTokens: raw('usage_hourly.total_tokens + excluded.total_tokens'),
          cost: raw('usage_hourly.cost + excluded.cost'),
          unpricedRequests: raw('usage_hourly.unpriced_requests + excluded.unpriced_requests'),
        })
        .execute('run');
    }
    const daily = deltas.dailyRows().map(({ costUnits, ...d }) => ({ ...d, cost: fromUnits(costUnits) }));
    for (const rows of chunked(daily, 6)) {
      await tx
        .createQueryBuilder(UsageDailyEntity)
        .insert(rows)
        .onConflict(['botId', 'day', 'currency'])
        .merge({
          requests: raw('usage_daily.requests + excluded.requests'),
          totalTokens: raw('usage_daily.total_tokens + excluded.total_tokens'),
          cost: raw('usage_daily.cost + excluded.cost'),
        })
        .execute('run');
    }
    return deltas;
  }
}

export { keyOf as recordKey };
