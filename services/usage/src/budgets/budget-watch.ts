import { Injectable } from '@nestjs/common';
import type { EntityManager } from '@mikro-orm/postgresql';
import { DomainEvents, type BudgetPeriod } from '@parley/contracts';
import { addToOutbox } from '@parley/kit';
import { toUnits } from '../prices/decimal';
import { dayOf, periodOf } from './periods';

interface UsedRow {
  bot_id: string;
  period: BudgetPeriod;
  max_tokens: string | null;
  max_cost: string | null;
  currency: string;
  tokens: string;
  cost: string;
}

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
  async check(tx: EntityManager, botIds: string[], now: Date): Promise<number> {
    if (botIds.length === 0) return 0;
    const day = periodOf('day', now);
    const month = periodOf('month', now);
    const rows = await tx.execute<UsedRow[]>(
      `select b.bot_id, b.period, b.max_tokens::text as max_tokens, trim_scale(b.max_cost)::text as max_cost, b.currency,
              coalesce(sum(d.total_tokens), 0)::text as tokens,
              trim_scale(coalesce(sum(d.cost) filter (where d.currency = b.currency), 0))::text as cost
       from usage_budgets b
       left join usage_daily d on d.bot_id = b.bot_id
         and d.day >= (case b.period when 'day' then ?::date else ?::date end)
         and d.day < (case b.period when 'day' then ?::date else ?::date end)
       where b.bot_id in (?) and (b.max_tokens is not null or b.max_cost is not null)
       group by b.bot_id, b.period, b.max_tokens, b.max_cost, b.currency`,
      [dayOf(day.start), dayOf(month.start), dayOf(day.end), dayOf(month.end), botIds],
    );
    let announced = 0;
    for (const row of rows) {
      const used = { tokens: Number(row.tokens), costUnits: toUnits(row.cost) };
      const budget = { maxTokens: row.max_tokens === null ? null : Number(row.max_tokens), maxCost: row.max_cost };
      if (!budgetReached(used, budget)) continue;
      const start = row.period === 'day' ? day.start : month.start;
      const fresh = await tx.execute<{ bot_id: string }[]>(
        `insert into usage_budget_alerts (bot_id, period, period_start, created_at) values (?, ?, ?, ?)
         on conflict do nothing returning bot_id`,
        [row.bot_id, row.period, start, now],
      );
      if (fresh.length === 0) continue;
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
