import { Inject, Injectable } from '@nestjs/common';
import { MikroORM } from '@mikro-orm/postgresql';
import type { z } from 'zod';
import {
  ParleyError,
  type Budget as BudgetView,
  type BudgetBodySchema,
  type BudgetPeriod,
  type Principal,
  type Quota,
} from '@parley/contracts';
import { OutboxRelay } from '@parley/kit/database';
import { BotDirectory } from '../access/bot-directory';
import { UsageAccess } from '../access/usage-access';
import { fromUnits, toUnits } from '../prices/decimal';
import type { Budget } from './budget.entity';
import { BudgetWatch, budgetReached } from './budget-watch';
import { BudgetsRepository } from './budgets.repository';
import { periodOf } from './periods';
import { QuotaCounters } from './quota-counters';

type BudgetBody = z.output<typeof BudgetBodySchema>;

function budgetView(b: Budget): BudgetView {
  return {
    bot_id: b.botId,
    period: b.period as BudgetPeriod,
    max_tokens: b.maxTokens ?? null,
    max_cost: b.maxCost ? fromUnits(toUnits(b.maxCost)) : null,
    currency: b.currency,
    updated_at: b.updatedAt.toISOString(),
  };
}

/** Budgets per bot, and the quota a bot has left in its current UTC day or month. */
@Injectable()
export class BudgetsService {
  constructor(
    @Inject(MikroORM) private readonly orm: MikroORM,
    @Inject(BudgetsRepository) private readonly budgets: BudgetsRepository,
    @Inject(UsageAccess) private readonly access: UsageAccess,
    @Inject(BotDirectory) private readonly bots: BotDirectory,
    @Inject(QuotaCounters) private readonly counters: QuotaCounters,
    @Inject(BudgetWatch) private readonly watch: BudgetWatch,
    @Inject(OutboxRelay) private readonly outbox: OutboxRelay,
  ) {}

  /** Sets the bot's budget (manage right); a budget already reached is announced at once. */
  async put(actor: Principal, botId: string, body: BudgetBody): Promise<BudgetView> {
    await this.access.requireBot(actor, botId, 'manage');
    const now = new Date();
    const { budget, announced } = await this.orm.em.fork().transactional(async (tx) => {
      const stored = await this.budgets.upsert(tx, {
        botId,
        period: body.period,
        maxTokens: body.max_tokens ?? null,
        maxCost: body.max_cost ?? null,
        currency: body.currency,
        updatedAt: now,
      });
      return { budget: stored, announced: await this.watch.check(tx, [botId], now) };
    });
    if (announced > 0) this.outbox.kick();
    return budgetView(budget);
  }

  /** The quota of a bot the caller may read (404 otherwise). */
  async quotaFor(actor: Principal, botId: string): Promise<Quota> {
    await this.access.requireBot(actor, botId, 'read');
    return this.quota(botId);
  }

  /** `usage.quota.check`: any known bot's quota, for the bot itself over NATS. */
  async quotaCheck(botId: string): Promise<Quota> {
    const standing = (await this.bots.standings([botId])).get(botId);
    if (standing === 'unknown') throw new ParleyError('NOT_FOUND', `bot ${botId} not found`);
    return this.quota(botId);
  }

  /** Without a budget: the current UTC month, no limits. */
  async quota(botId: string): Promise<Quota> {
    const budget = await this.budgets.byBot(botId);
    const period = (budget?.period ?? 'month') as BudgetPeriod;
    const currency = budget?.currency ?? 'USD';
    const { start, end } = periodOf(period, new Date());
    const usage = await this.counters.read(botId, period, start, end);
    const costUnits = usage.costUnits.get(currency) ?? 0n;
    const maxTokens = budget?.maxTokens ?? null;
    const maxCost = budget?.maxCost ? fromUnits(toUnits(budget.maxCost)) : null;
    const maxCostUnits = maxCost === null ? null : toUnits(maxCost);
    return {
      bot_id: botId,
      period,
      period_start: start.toISOString(),
      used_tokens: usage.tokens,
      used_cost: fromUnits(costUnits),
      max_tokens: maxTokens,
      max_cost: maxCost,
      remaining_tokens: maxTokens === null ? null : Math.max(0, maxTokens - usage.tokens),
      remaining_cost:
        maxCostUnits === null ? null : fromUnits(maxCostUnits > costUnits ? maxCostUnits - costUnits : 0n),
      currency,
      exceeded: budgetReached({ tokens: usage.tokens, costUnits }, { maxTokens, maxCost }),
    };
  }
}
