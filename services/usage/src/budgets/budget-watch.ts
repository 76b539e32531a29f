import { Inject, Injectable } from '@nestjs/common';
import type { EntityManager } from '@mikro-orm/postgresql';
import { DomainEvents } from '@parley/contracts';
import { addToOutbox } from '@parley/kit/database';
import { toUnits } from '../prices/decimal';
import { BudgetsRepository } from './budgets.repository';
import { periodOf } from './periods';

/** Whether usage has reached the budget: tokens or cost at or beyond their maximum. */
export function budgetReached(
  used: { tokens: number; costUnits: bigint },
  budget: { maxTokens: number | null; maxCost: string | null },
): boolean {
  if (budget.maxTokens !== null && used.tokens >= budget.maxTokens) return true;
  return budget.maxCost !== null && used.costUnits >= toUnits(budget.maxCost);
}

/**
 * Announces budgets crossed by a transaction's writes: inside that transaction it adds up the
 * bots' current periods from the daily counters and, for each budget reached, records the
 * alert and writes `evt.usage.budget_exceeded` to the outbox. The alert row's key
 * (bot, period, period start) makes it once per period, whatever the number of instances.
 */
@Injectable()
export class BudgetWatch {
  constructor(@Inject(BudgetsRepository) private readonly budgets: BudgetsRepository) {}

  async check(tx: EntityManager, botIds: string[], now: Date): Promise<number> {
    if (botIds.length === 0) return 0;
    const day = periodOf('day', now);
    const month = periodOf('month', now);
    const rows = await this.budgets.usedAgainstBudgets(tx, botIds, day, month);
    let announced = 0;
    for (const row of rows) {
      const used = { tokens: Number(row.tokens), costUnits: toUnits(row.cost) };
      const budget = { maxTokens: row.max_tokens === null ? null : Number(row.max_tokens), maxCost: row.max_cost };
      if (!budgetReached(used, budget)) continue;
      const start = row.period === 'day' ? day.start : month.start;
      const fresh = await this.budgets.recordAlert(tx, {
        botId: row.bot_id,
        period: row.period,
        periodStart: start,
        createdAt: now,
      });
      if (!fresh) continue;
      addToOutbox(tx, DomainEvents.budgetExceeded, {
        bot_id: row.bot_id,
        period: row.period,
        period_start: start.toISOString(),
        used_tokens: used.tokens,
        used_cost: row.cost,
        max_tokens: budget.maxTokens,
        max_cost: budget.maxCost,
        currency: row.currency,
        occurred_at: now.toISOString(),
      });
      announced += 1;
    }
    return announced;
  }
}
