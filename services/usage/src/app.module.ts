import { Module, type DynamicModule } from '@nestjs/common';
import { KitModule } from '@parley/kit';
import type { UsageConfig } from './config';
import { database } from './database';

@Module({})
export class AppModule {
  static forRoot(config: UsageConfig): DynamicModule {
    return {
      module: AppModule,
      imports: [KitModule.forRoot({ service: 'usage', config, database })],
    };
  }
}
