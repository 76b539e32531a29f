import { UsageRecordEntity } from './records/usage-record.entity';
import { migrations } from './migrations';

export const database = {
  entities: [UsageRecordEntity],
  migrations,
  migrationsPath: 'src/migrations',
};
