import { Module } from '@nestjs/common';
import { SessionsHandler } from './sessions.handler';
import { SessionsService } from './sessions.service';
import { MessageStatsConsumer } from './message-stats.consumer';

@Module({
  controllers: [SessionsHandler, MessageStatsConsumer],
  providers: [SessionsService],
  exports: [SessionsService],
})
export class SessionsModule {}
