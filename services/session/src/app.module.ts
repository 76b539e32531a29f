import { Module, type DynamicModule } from '@nestjs/common';
import { KitModule } from '@parley/kit';
import type { SessionConfig } from './config';
import { database } from './database';
import { SessionsModule } from './sessions/sessions.module';

@Module({})
export class AppModule {
  static forRoot(config: SessionConfig): DynamicModule {
    return {
      module: AppModule,
      imports: [KitModule.forRoot({ service: 'session', config, database }), SessionsModule],
    };
  }
}
