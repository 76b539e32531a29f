import { kitDatabase } from '@parley/kit/database';
import { LoginAddressEntity, RefreshTokenEntity, SigningKeyEntity } from './auth/auth.entities';
import { ApiKeyEntity, BotEntity } from './bots/bot.entities';
import { GroupEntity, MembershipEntity } from './groups/group.entities';
import { RoleEntity, RoleGrantEntity, UserRoleEntity } from './roles/role.entities';
import { UserEntity } from './users/user.entity';
import { migrations } from './migrations';

export const database = kitDatabase({
  entities: [
    UserEntity,
    SigningKeyEntity,
    RefreshTokenEntity,
    GroupEntity,
    MembershipEntity,
    RoleEntity,
    UserRoleEntity,
    RoleGrantEntity,
    BotEntity,
    ApiKeyEntity,
    LoginAddressEntity,
  ],
  migrations,
  migrationsPath: 'src/migrations',
  outbox: true,
});
