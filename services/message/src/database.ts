import { kitDatabase } from '@parley/kit/database';
import { MessageEntity, SessionScopeEntity } from './messages/message.entity';
import { migrations } from './migrations';

export const database = kitDatabase({
  entities: [MessageEntity, SessionScopeEntity],
  migrations,
  migrationsPath: 'src/migrations',
  outbox: true,
});
