import { Module, type DynamicModule } from '@nestjs/common';
import { KitModule } from '@parley/kit';
import { BotDirectory } from './access/bot-directory';
import { UsageAccess } from './access/usage-access';
import { ActivityIngest } from './activity/activity-ingest.service';
import { ActivityRepository } from './activity/activity.repository';
import { ActivityQueries } from './activity/activity-queries.service';
import { BudgetWatch } from './budgets/budget-watch';
import { BudgetsRepository } from './budgets/budgets.repository';
import { BudgetsService } from './budgets/budgets.service';
import { QuotaCounters } from './budgets/quota-counters';
import { USAGE_CONFIG, type UsageConfig } from './config';
import { database } from './database';
import { UsageIngest } from './ingestion/usage-ingest.service';
import { UsageMetrics } from './ingestion/usage-metrics';
import { UsageStreamHandlers, usageConsumerTuning } from './ingestion/usage-stream';
import { PricesRepository } from './prices/prices.repository';
import { PricesService } from './prices/prices.service';
import { Repricer } from './prices/repricer';
import { UsageHandler } from './records/usage.handler';
import { UsageLedger } from './records/usage-ledger';
import { UsageQueries } from './records/usage-queries.service';
import { UsageRecordsRepository } from './records/usage-records.repository';
import { UsageSummaryRepository } from './records/usage-summary.repository';

@Module({})
export class AppModule {
  static forRoot(config: UsageConfig): DynamicModule {
    return {
      module: AppModule,
      imports: [KitModule.forRoot({ service: 'usage', config, database, consumers: usageConsumerTuning(config) })],
      controllers: [UsageHandler, UsageStreamHandlers],
      providers: [
        { provide: USAGE_CONFIG, useValue: config },
        UsageRecordsRepository,
        UsageSummaryRepository,
        PricesRepository,
        ActivityRepository,
        BudgetsRepository,
        UsageMetrics,
        BotDirectory,
        UsageAccess,
        UsageLedger,
        BudgetWatch,
        QuotaCounters,
        UsageIngest,
        ActivityIngest,
        UsageQueries,
        ActivityQueries,
        Repricer,
        PricesService,
        BudgetsService,
      ],
    };
  }
}
