import { Inject, Injectable } from '@nestjs/common';
import { MikroORM } from '@mikro-orm/postgresql';
import { v7 as uuidv7 } from 'uuid';
import type { z } from 'zod';
import {
  ParleyError,
  decodeCursor,
  encodeCursor,
  type CursorPage,
  type Price,
  type PriceInputSchema,
  type Principal,
} from '@parley/contracts';
import { fromUnits, toUnits } from './decimal';
import { UsageLedger } from '../records/usage-ledger';
import { PriceEntity, RepriceJobEntity, type PriceRow } from './price.entity';
import { Repricer } from './repricer';

type PriceInput = z.output<typeof PriceInputSchema>;

export function priceView(p: PriceRow): Price {
  return {
    id: p.id,
    provider: p.provider,
    model: p.model,
    input_per_million: fromUnits(toUnits(p.inputPerMillion)),
    output_per_million: fromUnits(toUnits(p.outputPerMillion)),
    currency: p.currency,
    effective_from: p.effectiveFrom.toISOString(),
    created_at: p.createdAt.toISOString(),
  };
}

/**
 * The versioned price table. Storing a version (new, or a correction of the same provider,
 * model and effective_from) happens under the exclusive pricing lock, and queues the records
 * in that version's window for re-pricing: a price set after its requests arrived still
 * prices them, and unpriced requests become priced when their model gets a price.
 */
@Injectable()
export class PricesService {
  constructor(
    @Inject(MikroORM) private readonly orm: MikroORM,
    @Inject(UsageLedger) private readonly ledger: UsageLedger,
    @Inject(Repricer) private readonly repricer: Repricer,
  ) {}

  async put(actor: Principal, prices: PriceInput[]): Promise<{ items: Price[] }> {
    if (actor.type !== 'user' || !actor.is_admin) throw new ParleyError('FORBIDDEN', 'this needs an administrator');
    const now = new Date();
    const stored = await this.orm.em.fork().transactional(async (tx) => {
      await this.ledger.lockPricing(tx, 'exclusive');
      const rows = prices.map((p) => ({
        id: uuidv7(),
        provider: p.provider,
        model: p.model,
        inputPerMillion: p.input_per_million,
        outputPerMillion: p.output_per_million,
        currency: p.currency,
        effectiveFrom: p.effective_from ? new Date(p.effective_from) : now,
        createdAt: now,
        updatedAt: now,
      }));
      await tx
        .createQueryBuilder(PriceEntity)
        .insert(rows)
        .onConflict(['provider', 'model', 'effectiveFrom'])
        .merge(['inputPerMillion', 'outputPerMillion', 'currency', 'updatedAt'])
        .execute('run');
      const saved = await tx.find(
        PriceEntity,
        { $or: rows.map((r) => ({ provider: r.provider, model: r.model, effectiveFrom: r.effectiveFrom })) },
        { orderBy: { provider: 'asc', model: 'asc', effectiveFrom: 'asc' } },
      );
      for (const version of saved) {
        const next = await tx.findOne(
          PriceEntity,
          { provider: version.provider, model: version.model, effectiveFrom: { $gt: version.effectiveFrom } },
          { orderBy: { effectiveFrom: 'asc' } },
        );
        tx.create(RepriceJobEntity, {
          id: uuidv7(),
          provider: version.provider,
          model: version.model,
          fromAt: version.effectiveFrom,
          untilAt: next?.effectiveFrom ?? null,
          afterStartedAt: null,
          afterBotId: null,
          afterRequestId: null,
          createdAt: now,
        });
      }
      return saved;
    });
    this.repricer.kick();
    return { items: stored.map(priceView) };
  }

  /** Versions by provider and model, newest version first within a model. */
  async list(q: { provider?: string; model?: string; limit: number; cursor?: string }): Promise<CursorPage<Price>> {
    const conditions: string[] = [];
    const params: unknown[] = [];
    if (q.provider) {
      conditions.push('provider = ?');
      params.push(q.provider);
    }
    if (q.model) {
      conditions.push('model = ?');
      params.push(q.model);
    }
    if (q.cursor) {
      const [provider, model, effectiveFrom] = decodeCursor(q.cursor, 3);
      conditions.push('((provider, model) > (?, ?) or ((provider, model) = (?, ?) and effective_from < ?))');
      params.push(provider, model, provider, model, new Date(String(effectiveFrom)));
    }
    params.push(q.limit + 1);
    const em = this.orm.em.fork();
    const rows = await em.execute<Record<string, unknown>[]>(
      `select * from usage_prices ${conditions.length ? `where ${conditions.join(' and ')}` : ''}
       order by provider, model, effective_from desc limit ?`,
      params,
    );
    const items = rows.slice(0, q.limit).map((r) => priceView(em.map(PriceEntity, r)));
    const last = items.at(-1);
    return {
      items,
      next_cursor:
        rows.length > q.limit && last ? encodeCursor([last.provider, last.model, last.effective_from]) : null,
    };
  }
}
