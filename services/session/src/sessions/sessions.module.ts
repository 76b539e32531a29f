import { Module } from '@nestjs/common';
import { SessionsHandler } from './sessions.handler';
import { SessionsService } from './sessions.service';

@Module({ providers: [SessionsService, SessionsHandler], exports: [SessionsService] })
export class SessionsModule {}
