import { RefreshTokenEntity, SigningKeyEntity } from './auth/auth.entities';
import { UserEntity } from './users/user.entity';
import { migrations } from './migrations';

export const database = {
  entities: [UserEntity, SigningKeyEntity, RefreshTokenEntity],
  migrations,
  migrationsPath: 'src/migrations',
  outbox: false,
};
