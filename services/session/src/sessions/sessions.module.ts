import { Module } from '@nestjs/common';
import { SessionsHandler } from './sessions.handler';
import { SessionsService } from './sessions.service';
import { MessageStatsConsumer } from './message-stats.consumer';

@Module({ providers: [SessionsService, SessionsHandler, MessageStatsConsumer], exports: [SessionsService] })
export class SessionsModule {}
