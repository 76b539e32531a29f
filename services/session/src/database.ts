import { SessionEntity } from './sessions/session.entity';
import { migrations } from './migrations';

export const database = {
  entities: [SessionEntity],
  migrations,
  migrationsPath: 'src/migrations',
  outbox: true,
};
