import { Controller, Inject } from '@nestjs/common';
import { Durables, DomainEvents, type MessageStats } from '@parley/contracts';
import { DomainEventHandler } from '@parley/kit';
import { SessionsService } from './sessions.service';

/** Keeps each session's message counters and rolled-up sensitive status in step with its messages. */
@Controller()
export class MessageStatsConsumer {
  constructor(@Inject(SessionsService) private readonly sessions: SessionsService) {}

  @DomainEventHandler(DomainEvents.messageStats, { durable: Durables.sessionMessageStats })
  async messageStats(stats: MessageStats): Promise<void> {
    await this.sessions.applyStats(stats);
  }
}
