import { kitDatabase } from '@parley/kit/database';
import { ActivityEventEntity } from './activity/activity-event.entity';
import { BudgetAlertEntity, BudgetEntity } from './budgets/budget.entity';
import { PriceEntity, RepriceJobEntity } from './prices/price.entity';
import { UsageDailyEntity, UsageHourlyEntity, UsageRecordEntity } from './records/usage-record.entity';
import { migrations } from './migrations';

export const database = kitDatabase({
  entities: [
    UsageRecordEntity,
    UsageHourlyEntity,
    UsageDailyEntity,
    ActivityEventEntity,
    PriceEntity,
    RepriceJobEntity,
    BudgetEntity,
    BudgetAlertEntity,
  ],
  migrations,
  migrationsPath: 'src/migrations',
  outbox: true,
});
