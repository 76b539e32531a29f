import { Module, type DynamicModule } from '@nestjs/common';
import { KitModule } from '@parley/kit';
import type { UsageConfig } from './config';
import { database } from './database';
import { UsageHandler } from './records/usage.handler';

@Module({})
export class AppModule {
  static forRoot(config: UsageConfig): DynamicModule {
    return {
      module: AppModule,
      imports: [KitModule.forRoot({ service: 'usage', config, database })],
      providers: [UsageHandler],
    };
  }
}
