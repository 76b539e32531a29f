import { Module, type DynamicModule } from '@nestjs/common';
import { KitModule } from '@parley/kit';
import { ACCESS_CONFIG, type AccessConfig } from './config';
import { database } from './database';
import { AuthHandler } from './auth/auth.handler';
import { AuthService } from './auth/auth.service';
import { KeysService } from './auth/keys.service';
import { RefreshTokensRepository } from './auth/refresh-tokens.repository';
import { SigningKeysRepository } from './auth/signing-keys.repository';
import { LoginAddressesRepository } from './auth/login-addresses.repository';
import { BootstrapAdmin } from './users/bootstrap-admin';
import { AccessChanges } from './changes';
import { AccessEventsConsumer } from './access-events.consumer';
import { BotsRepository } from './bots/bots.repository';
import { BotsService } from './bots/bots.service';
import { NatsCredentialsService } from './bots/nats-credentials.service';
import { GroupsRepository } from './groups/groups.repository';
import { GroupsService } from './groups/groups.service';
import { AccessControlHandler } from './permissions/access-control.handler';
import { PermissionsService } from './permissions/permissions.service';
import { RolesRepository } from './roles/roles.repository';
import { RolesService } from './roles/roles.service';
import { UsersHandler } from './users/users.handler';
import { UsersRepository } from './users/users.repository';
import { UsersService } from './users/users.service';

@Module({})
export class AppModule {
  static forRoot(config: AccessConfig): DynamicModule {
    return {
      module: AppModule,
      imports: [KitModule.forRoot({ service: 'access', config, database })],
      controllers: [AuthHandler, UsersHandler, AccessControlHandler, AccessEventsConsumer],
      providers: [
        { provide: ACCESS_CONFIG, useValue: config },
        UsersRepository,
        GroupsRepository,
        RolesRepository,
        BotsRepository,
        RefreshTokensRepository,
        SigningKeysRepository,
        UsersService,
        KeysService,
        LoginAddressesRepository,
        AuthService,
        BootstrapAdmin,
        AccessChanges,
        GroupsService,
        RolesService,
        BotsService,
        NatsCredentialsService,
        PermissionsService,
      ],
    };
  }
}
