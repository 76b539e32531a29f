import { Inject, Injectable, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { DomainEvents } from '@parley/contracts';
import { DurableConsumer, LOGGER, Metrics, Nats, consumeDomainEvent, type Logger } from '@parley/kit';
import { SessionsService } from './sessions.service';

/** Keeps each session's message counters and rolled-up sensitive status in step with its messages. */
@Injectable()
export class MessageStatsConsumer implements OnApplicationBootstrap, OnModuleDestroy {
  private consumer: DurableConsumer<typeof DomainEvents.messageStats.schema> | undefined;

  constructor(
    @Inject(SessionsService) private readonly sessions: SessionsService,
    @Inject(Nats) private readonly nats: Nats,
    @Inject(LOGGER) private readonly logger: Logger,
    @Inject(Metrics) private readonly metrics: Metrics,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    this.consumer = await consumeDomainEvent(this.nats, this.logger, this.metrics, {
      durable: 'session-message-stats',
      event: DomainEvents.messageStats,
      handle: (stats) => this.sessions.applyStats(stats),
    });
  }

  async onModuleDestroy(): Promise<void> {
    await this.consumer?.stop();
  }
}
