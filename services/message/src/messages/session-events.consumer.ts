import { Inject, Injectable, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { MikroORM } from '@mikro-orm/postgresql';
import { SessionEventSchema, type SessionEvent } from '@parley/contracts';
import {
  DurableConsumer,
  LOGGER,
  Metrics,
  Nats,
  consumeDomainEvent,
  type DeliveryMeta,
  type Logger,
} from '@parley/kit';
import { MessageEntity, SessionScopeEntity } from './message.entity';

/**
 * Follows the session service's events: keeps each session's read scope, and deletes a
 * deleted session's messages. Idempotent, so a redelivery after a crash changes nothing.
 */
@Injectable()
export class SessionEventsConsumer implements OnApplicationBootstrap, OnModuleDestroy {
  private consumer: DurableConsumer<typeof SessionEventSchema> | undefined;

  constructor(
    @Inject(MikroORM) private readonly orm: MikroORM,
    @Inject(Nats) private readonly nats: Nats,
    @Inject(LOGGER) private readonly logger: Logger,
    @Inject(Metrics) private readonly metrics: Metrics,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    this.consumer = await consumeDomainEvent(this.nats, this.logger, this.metrics, {
      durable: 'message-session-events',
      event: { subject: 'evt.session.>', schema: SessionEventSchema },
      handle: (event, meta) => this.handle(event, meta),
    });
  }

  async handle(event: SessionEvent, meta: DeliveryMeta): Promise<void> {
    const em = this.orm.em.fork();
    if (meta.subject === 'evt.session.deleted') {
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

  async onModuleDestroy(): Promise<void> {
    await this.consumer?.stop();
  }
}
