import { Inject, Injectable, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { DLQ_DOMAIN, DOMAIN_STREAM, DomainEvents } from '@parley/contracts';
import { DOMAIN_STREAM_SPEC, DurableConsumer, LOGGER, Metrics, Nats, ensureStream, type Logger } from '@parley/kit';
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
    await ensureStream(this.nats, DOMAIN_STREAM_SPEC);
    this.consumer = new DurableConsumer(
      this.nats,
      {
        stream: DOMAIN_STREAM,
        durable: 'session-message-stats',
        filterSubject: DomainEvents.messageStats.subject,
        schema: DomainEvents.messageStats.schema,
        deadLetterSubject: DLQ_DOMAIN,
      },
      (stats) => this.sessions.applyStats(stats),
      this.logger,
      this.metrics,
    );
    await this.consumer.start();
  }

  async onModuleDestroy(): Promise<void> {
    await this.consumer?.stop();
  }
}
