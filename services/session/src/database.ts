import { kitDatabase } from '@parley/kit/database';
import { SessionEntity } from './sessions/session.entity';
import { migrations } from './migrations';

export const database = kitDatabase({
  entities: [SessionEntity],
  migrations,
  migrationsPath: 'src/migrations',
  outbox: true,
});
