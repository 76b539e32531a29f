import { Inject, Injectable, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { DLQ_DOMAIN, DOMAIN_STREAM, DomainEvents } from '@parley/contracts';
import { DOMAIN_STREAM_SPEC, DurableConsumer, LOGGER, Metrics, Nats, ensureStream, type Logger } from '@parley/kit';
import { AccessChanges } from './changes';

/**
 * Bumps the access epoch again for every `evt.access.changed` relayed from the outbox. The
 * writer bumps it right after its commit; this covers the writer dying in between, so no
 * cached decision outlives a committed change by more than the relay's delay.
 */
@Injectable()
export class AccessEventsConsumer implements OnApplicationBootstrap, OnModuleDestroy {
  private consumer: DurableConsumer<typeof DomainEvents.accessChanged.schema> | undefined;

  constructor(
    @Inject(Nats) private readonly nats: Nats,
    @Inject(AccessChanges) private readonly changes: AccessChanges,
    @Inject(LOGGER) private readonly logger: Logger,
    @Inject(Metrics) private readonly metrics: Metrics,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    await ensureStream(this.nats, DOMAIN_STREAM_SPEC);
    this.consumer = new DurableConsumer(
      this.nats,
      {
        stream: DOMAIN_STREAM,
        durable: 'access-epoch',
        filterSubject: DomainEvents.accessChanged.subject,
        schema: DomainEvents.accessChanged.schema,
        deadLetterSubject: DLQ_DOMAIN,
      },
      () => this.changes.bumpEpoch(),
      this.logger,
      this.metrics,
    );
    await this.consumer.start();
  }

  async onModuleDestroy(): Promise<void> {
    await this.consumer?.stop();
  }
}
