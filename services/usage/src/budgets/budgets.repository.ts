import { Inject, Injectable } from '@nestjs/common';
import { MikroORM, type EntityManager } from '@mikro-orm/postgresql';
import type { BudgetPeriod } from '@parley/contracts';
import { BudgetEntity, type Budget } from './budget.entity';
import type { DailyTotal } from '../records/rollup';
import { dayOf } from './periods';

/** A budget beside what its bot used in the budget's current period. */
export interface UsedRow {
  bot_id: string;
  period: BudgetPeriod;
  max_tokens: string | null;
  max_cost: string | null;
  currency: string;
  tokens: string;
  cost: string;
}

/**
 * Budgets, their alerts, and the daily counters they are measured against. Methods that take
 * an EntityManager run in the caller's transaction.
 */
@Injectable()
export class BudgetsRepository {
  constructor(@Inject(MikroORM) private readonly orm: MikroORM) {}

  upsert(tx: EntityManager, budget: Budget): Promise<Budget> {
    return tx.upsert(BudgetEntity, budget);
  }

  byBot(botId: string): Promise<Budget | null> {
    return this.orm.em.fork().findOne(BudgetEntity, { botId });
  }

  /**
   * The budgets (with a limit) of these bots, each with the tokens and cost (in its currency)
   * used in its current period: [day.start, day.end) or [month.start, month.end).
   */
  usedAgainstBudgets(
    tx: EntityManager,
    botIds: string[],
    day: { start: Date; end: Date },
    month: { start: Date; end: Date },
  ): Promise<UsedRow[]> {
    return tx.execute<UsedRow[]>(
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
  }

  /** Records that the bot's budget was exceeded in the period; false if that was recorded before. */
  async recordAlert(
    tx: EntityManager,
    alert: { botId: string; period: BudgetPeriod; periodStart: Date; createdAt: Date },
  ): Promise<boolean> {
    const fresh = await tx.execute<{ bot_id: string }[]>(
      `insert into usage_budget_alerts (bot_id, period, period_start, created_at) values (?, ?, ?, ?)
         on conflict do nothing returning bot_id`,
      [alert.botId, alert.period, alert.periodStart, alert.createdAt],
    );
    return fresh.length > 0;
  }

  /** A bot's daily totals (each with its row's revision) over the UTC days in [start, end). */
  async dailyTotals(botId: string, start: Date, end: Date): Promise<DailyTotal[]> {
    const rows = await this.orm.em
      .fork()
      .execute<{ day: string; currency: string; revision: string; tokens: string; cost: string }[]>(
        `select to_char(day, 'YYYY-MM-DD') as day, currency, revision::text as revision,
              total_tokens::text as tokens, cost::text as cost
       from usage_daily where bot_id = ? and day >= ?::date and day < ?::date`,
        [botId, dayOf(start), dayOf(end)],
      );
    return rows.map((r) => ({ botId, ...r }));
  }
}
