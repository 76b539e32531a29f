import { defineEntity, p, type InferEntity } from '@mikro-orm/postgresql';

/** A bot's budget per UTC day or month, in tokens and/or cost in one currency. */
export const BudgetEntity = defineEntity({
  name: 'Budget',
  tableName: 'usage_budgets',
  properties: {
    botId: p.uuid().primary(),
    period: p.string().length(8),
    maxTokens: p.bigint('number').nullable(),
    maxCost: p.decimal('string').columnType('numeric').nullable(),
    currency: p.string().length(3),
    updatedAt: p.datetime(),
  },
});
export type Budget = InferEntity<typeof BudgetEntity>;

/** That a bot's budget was announced as exceeded in a period: the event goes out once per period. */
export const BudgetAlertEntity = defineEntity({
  name: 'BudgetAlert',
  tableName: 'usage_budget_alerts',
  properties: {
    botId: p.uuid().primary(),
    period: p.string().length(8).primary(),
    periodStart: p.datetime().primary(),
    createdAt: p.datetime(),
  },
});
export type BudgetAlert = InferEntity<typeof BudgetAlertEntity>;
