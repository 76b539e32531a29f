import { Module, type DynamicModule } from '@nestjs/common';
import { APP_FILTER, APP_GUARD, DiscoveryModule } from '@nestjs/core';
import { KitModule } from '@parley/kit';
import { GATEWAY_CONFIG, type GatewayConfig } from './config';
import { AuthController } from './auth/auth.controller';
import { AuthGuard } from './auth/auth.guard';
import { TokenVerifier } from './auth/token-verifier';
import { DocsController } from './docs/docs.controller';
import { ProblemFilter } from './http/problem.filter';
import { SessionsController } from './sessions/sessions.controller';
import { UsersController } from './users/users.controller';
import { BotsController } from './bots/bots.controller';
import { GroupsController } from './groups/groups.controller';
import { RolesController } from './roles/roles.controller';
import { ConversationController } from './messages/conversation.controller';
import { MessagesController } from './messages/messages.controller';
import { KeyVerifier } from './auth/key-verifier';
import { RateLimiter } from './auth/rate-limiter';
import { EventIngest } from './usage/event-ingest';
import { UsageController } from './usage/usage.controller';

@Module({})
export class AppModule {
  static forRoot(config: GatewayConfig): DynamicModule {
    return {
      module: AppModule,
      imports: [KitModule.forRoot({ service: 'gateway', config }), DiscoveryModule],
      controllers: [
        AuthController,
        UsersController,
        GroupsController,
        RolesController,
        BotsController,
        SessionsController,
        MessagesController,
        ConversationController,
        UsageController,
        DocsController,
      ],
      providers: [
        { provide: GATEWAY_CONFIG, useValue: config },
        TokenVerifier,
        KeyVerifier,
        RateLimiter,
        EventIngest,
        { provide: APP_GUARD, useClass: AuthGuard },
        { provide: APP_FILTER, useClass: ProblemFilter },
      ],
    };
  }
}
