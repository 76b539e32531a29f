import { Controller, Inject } from '@nestjs/common';
import { Ctx, Payload } from '@nestjs/microservices';
import { Durables, DomainEvents, SessionEvents, type SessionEvent } from '@parley/contracts';
import { DomainEventHandler, NatsContext } from '@parley/kit';
import { MessagesRepository } from './messages.repository';

/**
 * Follows the session service's events: keeps each session's scope and status (lifting the
 * fence a change set), and deletes a deleted session's messages. Idempotent, and an event
 * older than the one applied changes nothing, so redeliveries in any order are harmless.
 */
@Controller()
export class SessionEventsConsumer {
  constructor(@Inject(MessagesRepository) private readonly messages: MessagesRepository) {}

  @DomainEventHandler(SessionEvents, { durable: Durables.messageSessionEvents })
  async handle(@Payload() event: SessionEvent, @Ctx() ctx: NatsContext): Promise<void> {
    const scope = { id: event.session_id, user_id: event.user_id, bot_id: event.bot_id, group_ids: event.group_ids };
    const occurredAt = new Date(event.occurred_at);
    if (ctx.subject === DomainEvents.sessionDeleted.subject) {
      await this.messages.deleteSession(scope, occurredAt);
      return;
    }
    await this.messages.applyScopeEvent({ ...scope, status: event.status }, occurredAt);
  }
}
