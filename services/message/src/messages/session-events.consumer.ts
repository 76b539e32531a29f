import { Controller, Inject } from '@nestjs/common';
import { Ctx, Payload } from '@nestjs/microservices';
import { MikroORM } from '@mikro-orm/postgresql';
import { Durables, DomainEvents, SessionEvents, type SessionEvent } from '@parley/contracts';
import { DomainEventHandler, NatsContext } from '@parley/kit';
import { MessageEntity, SessionScopeEntity } from './message.entity';

/**
 * Follows the session service's events: keeps each session's read scope, and deletes a
 * deleted session's messages. Idempotent, so a redelivery after a crash changes nothing.
 */
@Controller()
export class SessionEventsConsumer {
  constructor(@Inject(MikroORM) private readonly orm: MikroORM) {}

  @DomainEventHandler(SessionEvents, { durable: Durables.messageSessionEvents })
  async handle(@Payload() event: SessionEvent, @Ctx() ctx: NatsContext): Promise<void> {
    const em = this.orm.em.fork();
    if (ctx.subject === DomainEvents.sessionDeleted.subject) {
      await em.transactional(async (tx) => {
        await tx.nativeDelete(MessageEntity, { sessionId: event.session_id });
        await tx.nativeDelete(SessionScopeEntity, { sessionId: event.session_id });
      });
      return;
    }
    // Only the scope columns: the counters and seq belong to this service.
    await em.execute(
      `insert into session_scopes (session_id, user_id, bot_id, group_ids, updated_at) values (?, ?, ?, ?::uuid[], ?)
       on conflict (session_id) do update set user_id = excluded.user_id, bot_id = excluded.bot_id, group_ids = excluded.group_ids`,
      [event.session_id, event.user_id, event.bot_id, `{${event.group_ids.join(',')}}`, new Date(event.occurred_at)],
    );
  }
}
