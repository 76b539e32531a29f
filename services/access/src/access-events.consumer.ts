import { Controller, Inject } from '@nestjs/common';
import { Durables, DomainEvents } from '@parley/contracts';
import { DomainEventHandler } from '@parley/kit';
import { AccessChanges } from './changes';

/**
 * Bumps the access epoch again for every `evt.access.changed` relayed from the outbox. The
 * writer bumps it right after its commit; this covers the writer dying in between, so no
 * cached decision outlives a committed change by more than the relay's delay.
 */
@Controller()
export class AccessEventsConsumer {
  constructor(@Inject(AccessChanges) private readonly changes: AccessChanges) {}

  @DomainEventHandler(DomainEvents.accessChanged, { durable: Durables.accessEpoch })
  async accessChanged(): Promise<void> {
    await this.changes.bumpEpoch();
  }
}
