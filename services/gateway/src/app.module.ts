import { Module, type DynamicModule } from '@nestjs/common';
import { APP_FILTER, APP_GUARD, DiscoveryModule } from '@nestjs/core';
import { KitModule } from '@parley/kit';
import { GATEWAY_CONFIG, type GatewayConfig } from './config';
import { GATEWAY_CONTROLLERS } from './controllers';
import { AuthGuard } from './auth/auth.guard';
import { TokenVerifier } from './auth/token-verifier';
import { ProblemFilter } from './http/problem.filter';
import { StreamLeases } from './messages/stream-leases';
import { StreamWatch } from './messages/stream-watch';
import { KeyVerifier } from './auth/key-verifier';
import { RateLimiter } from './auth/rate-limiter';
import { EventIngest } from './usage/event-ingest';

@Module({})
export class AppModule {
  static forRoot(config: GatewayConfig): DynamicModule {
    return {
      module: AppModule,
      imports: [KitModule.forRoot({ service: 'gateway', config }), DiscoveryModule],
      controllers: GATEWAY_CONTROLLERS,
      providers: [
        { provide: GATEWAY_CONFIG, useValue: config },
        TokenVerifier,
        KeyVerifier,
        RateLimiter,
        EventIngest,
        StreamLeases,
        StreamWatch,
        { provide: APP_GUARD, useClass: AuthGuard },
        { provide: APP_FILTER, useClass: ProblemFilter },
      ],
    };
  }
}
