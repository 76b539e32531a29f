import { Inject, Injectable } from '@nestjs/common';
import { MikroORM, type EntityManager } from '@mikro-orm/postgresql';
import { KIT_OPTIONS, type KitOptions } from '@parley/kit';
import { keysetSql, type KeysetList, type KeyValues } from '@parley/kit/database';
import { Locks } from '../locks';
import type { PriceVersion } from './price-book';
import { PriceEntity, RepriceJobEntity, type PriceRow, type RepriceJob } from './price.entity';

/** Price versions by provider and model, newest version first within a model. */
export const PRICE_VERSIONS: KeysetList = {
  name: 'prices',
  keys: [
    { column: 'provider', type: 'text', order: 'asc' },
    { column: 'model', type: 'text', order: 'asc' },
    { column: 'effective_from', type: 'timestamp', order: 'desc' },
  ],
};

/** Changes whenever a price version is stored or corrected. */
export const PRICES_STAMP_SQL = `(select count(*)::text || ':' || coalesce(max(updated_at)::text, '') from usage_prices)`;

/** Where a re-pricing job got to: the last record it worked through. */
export interface RepricePosition {
  startedAt: Date;
  botId: string;
  requestId: string;
}

/**
 * The price table, its lock and the re-pricing jobs. Methods that take an EntityManager run
 * in the caller's transaction.
 */
@Injectable()
export class PricesRepository {
  private readonly pricingLock: string;

  constructor(
    @Inject(MikroORM) private readonly orm: MikroORM,
    @Inject(KIT_OPTIONS) options: KitOptions,
  ) {
    this.pricingLock = Locks.pricing(options);
  }

  /** Takes the pricing lock (see Locks.pricing) until the transaction ends. */
  async lockPricing(tx: EntityManager, mode: 'shared' | 'exclusive'): Promise<void> {
    const fn = mode === 'shared' ? 'pg_advisory_xact_lock_shared' : 'pg_advisory_xact_lock';
    await tx.execute(`select ${fn}(hashtext(?))`, [this.pricingLock]);
  }

  /** The price table's stamp (see PRICES_STAMP_SQL). */
  async stamp(em: EntityManager): Promise<string> {
    const [row] = await em.execute<{ stamp: string }[]>(`select ${PRICES_STAMP_SQL} as stamp`);
    return row.stamp;
  }

  /** Every price version. */
  async versions(em: EntityManager): Promise<PriceVersion[]> {
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
    return rows.map((r) => ({
      id: r.id,
      provider: r.provider,
      model: r.model,
      inputPerMillion: r.input,
      outputPerMillion: r.output,
      currency: r.currency,
      effectiveFrom: new Date(r.effective_from),
    }));
  }

  /**
   * Stores versions: new ones, or corrections of the same provider, model and effective_from;
   * answers them as stored, by provider, model and effective_from.
   */
  async upsertVersions(tx: EntityManager, rows: PriceRow[]): Promise<PriceRow[]> {
    await tx
      .createQueryBuilder(PriceEntity)
      .insert(rows)
      .onConflict(['provider', 'model', 'effectiveFrom'])
      .merge(['inputPerMillion', 'outputPerMillion', 'currency', 'updatedAt'])
      .execute('run');
    return tx.find(
      PriceEntity,
      { $or: rows.map((r) => ({ provider: r.provider, model: r.model, effectiveFrom: r.effectiveFrom })) },
      { orderBy: { provider: 'asc', model: 'asc', effectiveFrom: 'asc' } },
    );
  }

  /** The version of the same model that follows this one, if any. */
  nextVersion(tx: EntityManager, version: PriceRow): Promise<PriceRow | null> {
    return tx.findOne(
      PriceEntity,
      { provider: version.provider, model: version.model, effectiveFrom: { $gt: version.effectiveFrom } },
      { orderBy: { effectiveFrom: 'asc' } },
    );
  }

  /** Price versions after a position of PRICE_VERSIONS, up to `take`. */
  async listPage(
    filters: { provider?: string; model?: string },
    position: { after?: KeyValues; take: number },
  ): Promise<PriceRow[]> {
    const conditions: string[] = [];
    const params: unknown[] = [];
    if (filters.provider) {
      conditions.push('provider = ?');
      params.push(filters.provider);
    }
    if (filters.model) {
      conditions.push('model = ?');
      params.push(filters.model);
    }
    if (position.after) {
      const after = keysetSql(PRICE_VERSIONS, position.after);
      conditions.push(after.sql);
      params.push(...after.params);
    }
    params.push(position.take);
    const em = this.orm.em.fork();
    const rows = await em.execute<Record<string, unknown>[]>(
      `select * from usage_prices ${conditions.length ? `where ${conditions.join(' and ')}` : ''}
       order by provider, model, effective_from desc limit ?`,
      params,
    );
    return rows.map((r) => em.map(PriceEntity, r));
  }

  /** Queues the records of a model in [from, until) for re-pricing, from the start. */
  queueReprice(
    tx: EntityManager,
    job: Pick<RepriceJob, 'id' | 'provider' | 'model' | 'fromAt' | 'untilAt' | 'createdAt'>,
  ): void {
    tx.create(RepriceJobEntity, { ...job, afterStartedAt: null, afterBotId: null, afterRequestId: null });
  }

  /** The oldest re-pricing job no other transaction holds, locked; undefined when none is left. */
  async takeRepriceJob(tx: EntityManager): Promise<RepriceJob | undefined> {
    const [job] = await tx.execute<Record<string, unknown>[]>(
      'select * from usage_reprice_jobs order by created_at, id limit 1 for update skip locked',
    );
    return job ? tx.map(RepriceJobEntity, job) : undefined;
  }

  async finishRepriceJob(tx: EntityManager, id: string): Promise<void> {
    await tx.nativeDelete(RepriceJobEntity, { id });
  }

  async advanceRepriceJob(tx: EntityManager, id: string, last: RepricePosition): Promise<void> {
    await tx.nativeUpdate(
      RepriceJobEntity,
      { id },
      { afterStartedAt: last.startedAt, afterBotId: last.botId, afterRequestId: last.requestId },
    );
  }
}
