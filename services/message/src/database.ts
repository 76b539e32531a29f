import { MessageEntity, SessionScopeEntity } from './messages/message.entity';
import { migrations } from './migrations';

export const database = {
  entities: [MessageEntity, SessionScopeEntity],
  migrations,
  migrationsPath: 'src/migrations',
  outbox: true,
};
