import { Controller, Inject } from '@nestjs/common';
import { Ctx, Payload } from '@nestjs/microservices';
import { Durables, DomainEvents, SessionEvents, type SessionEvent } from '@parley/contracts';
import { DomainEventHandler, NatsContext } from '@parley/kit';
import { MessagesRepository } from './messages.repository';

/**
 * Follows the session service's events: keeps each session's read scope, and deletes a
 * deleted session's messages. Idempotent, so a redelivery after a crash changes nothing.
 */
@Controller()
export class SessionEventsConsumer {
  constructor(@Inject(MessagesRepository) private readonly messages: MessagesRepository) {}

  @DomainEventHandler(SessionEvents, { durable: Durables.messageSessionEvents })
  async handle(@Payload() event: SessionEvent, @Ctx() ctx: NatsContext): Promise<void> {
    if (ctx.subject === DomainEvents.sessionDeleted.subject) {
      await this.messages.deleteSession(event.session_id);
      return;
    }
    const scope = { id: event.session_id, user_id: event.user_id, bot_id: event.bot_id, group_ids: event.group_ids };
    await this.messages.upsertScope(scope, { updatedAt: new Date(event.occurred_at) });
  }
}
