import { Controller, Inject } from '@nestjs/common';
import type { z } from 'zod';
import { QuotaCheckRpc, UsageRpc } from '@parley/contracts';
import { RpcHandler } from '@parley/kit';
import { ActivityQueries } from '../activity/activity-queries.service';
import { BudgetsService } from '../budgets/budgets.service';
import { PricesService } from '../prices/prices.service';
import { UsageQueries } from './usage-queries.service';

type Req<K extends keyof typeof UsageRpc> = z.output<(typeof UsageRpc)[K]['request']>;

/** The NATS edge of the usage service. */
@Controller()
export class UsageHandler {
  constructor(
    @Inject(UsageQueries) private readonly queries: UsageQueries,
    @Inject(ActivityQueries) private readonly activity: ActivityQueries,
    @Inject(PricesService) private readonly prices: PricesService,
    @Inject(BudgetsService) private readonly budgets: BudgetsService,
  ) {}

  @RpcHandler(UsageRpc.sessionTotals)
  sessionTotals(req: Req<'sessionTotals'>) {
    return this.queries.sessionTotals(req.session_id);
  }

  @RpcHandler(UsageRpc.summary)
  summary(req: Req<'summary'>) {
    return this.queries.summary(req.actor, req);
  }

  @RpcHandler(UsageRpc.records)
  records(req: Req<'records'>) {
    return this.queries.records(req.actor, req);
  }

  @RpcHandler(UsageRpc.activity)
  listActivity(req: Req<'activity'>) {
    return this.activity.list(req.actor, req);
  }

  @RpcHandler(UsageRpc.putPrices)
  putPrices(req: Req<'putPrices'>) {
    return this.prices.put(req.actor, req.prices);
  }

  @RpcHandler(UsageRpc.listPrices)
  listPrices(req: Req<'listPrices'>) {
    return this.prices.list(req);
  }

  @RpcHandler(UsageRpc.putBudget)
  putBudget(req: Req<'putBudget'>) {
    const { actor, bot_id, ...body } = req;
    return this.budgets.put(actor, bot_id, body);
  }

  @RpcHandler(UsageRpc.quota)
  quota(req: Req<'quota'>) {
    return this.budgets.quotaFor(req.actor, req.bot_id);
  }

  @RpcHandler(QuotaCheckRpc)
  quotaCheck(req: z.output<typeof QuotaCheckRpc.request>) {
    return this.budgets.quotaCheck(req.bot_id);
  }
}
