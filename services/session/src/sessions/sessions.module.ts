import { Module } from '@nestjs/common';
import { SessionsHandler } from './sessions.handler';
import { SessionsService } from './sessions.service';
import { SessionsRepository } from './sessions.repository';
import { MessageStatsConsumer } from './message-stats.consumer';

@Module({
  controllers: [SessionsHandler, MessageStatsConsumer],
  providers: [SessionsService, SessionsRepository],
  exports: [SessionsService],
})
export class SessionsModule {}
