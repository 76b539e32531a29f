import { Inject, Injectable } from '@nestjs/common';
import { MikroORM } from '@mikro-orm/postgresql';
import { v7 as uuidv7 } from 'uuid';
import type { z } from 'zod';
import { ParleyError, type CursorPage, type Price, type PriceInputSchema, type Principal } from '@parley/contracts';
import { Keyset } from '@parley/kit/database';
import { fromUnits, toUnits } from './decimal';
import type { PriceRow } from './price.entity';
import { PRICE_VERSIONS, PricesRepository } from './prices.repository';
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
    @Inject(PricesRepository) private readonly priceTable: PricesRepository,
    @Inject(Repricer) private readonly repricer: Repricer,
    @Inject(Keyset) private readonly keyset: Keyset,
  ) {}

  async put(actor: Principal, prices: PriceInput[]): Promise<{ items: Price[] }> {
    if (actor.type !== 'user' || !actor.is_admin) throw new ParleyError('FORBIDDEN', 'this needs an administrator');
    const now = new Date();
    const stored = await this.orm.em.fork().transactional(async (tx) => {
      await this.priceTable.lockPricing(tx, 'exclusive');
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
      const saved = await this.priceTable.upsertVersions(tx, rows);
      for (const version of saved) {
        const next = await this.priceTable.nextVersion(tx, version);
        this.priceTable.queueReprice(tx, {
          id: uuidv7(),
          provider: version.provider,
          model: version.model,
          fromAt: version.effectiveFrom,
          untilAt: next?.effectiveFrom ?? null,
          createdAt: now,
        });
      }
      return saved;
    });
    this.repricer.kick();
    return { items: stored.map(priceView) };
  }

  /** Versions by provider and model, newest version first within a model. */
  list(q: {
    actor: Principal;
    provider?: string;
    model?: string;
    limit: number;
    cursor?: string;
  }): Promise<CursorPage<Price>> {
    const filters = { provider: q.provider, model: q.model };
    return this.keyset.page(
      PRICE_VERSIONS,
      q,
      { actor: q.actor, filters },
      (position) => this.priceTable.listPage(filters, position),
      { view: priceView, key: (p) => [p.provider, p.model, p.effectiveFrom.toISOString()] },
    );
  }
}
