import { Module, type DynamicModule } from '@nestjs/common';
import { KitModule } from '@parley/kit';
import type { MessageConfig } from './config';
import { database } from './database';
import { SessionEventsConsumer } from './messages/session-events.consumer';
import { MessagesHandler } from './messages/messages.handler';
import { MessagesRepository } from './messages/messages.repository';
import { MessagesService } from './messages/messages.service';

@Module({})
export class AppModule {
  static forRoot(config: MessageConfig): DynamicModule {
    return {
      module: AppModule,
      imports: [KitModule.forRoot({ service: 'message', config, database })],
      controllers: [MessagesHandler, SessionEventsConsumer],
      providers: [MessagesRepository, MessagesService],
    };
  }
}
