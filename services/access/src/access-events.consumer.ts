import { Inject, Injectable, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { DomainEvents } from '@parley/contracts';
import { DurableConsumer, LOGGER, Metrics, Nats, consumeDomainEvent, type Logger } from '@parley/kit';
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
    this.consumer = await consumeDomainEvent(this.nats, this.logger, this.metrics, {
      durable: 'access-epoch',
      event: DomainEvents.accessChanged,
      handle: () => this.changes.bumpEpoch(),
    });
  }

  async onModuleDestroy(): Promise<void> {
    await this.consumer?.stop();
  }
}
