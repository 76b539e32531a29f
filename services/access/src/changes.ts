import { Inject, Injectable } from '@nestjs/common';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { Redis } from 'ioredis';
import { DomainEvents, RedisKeys } from '@parley/contracts';
import { KIT_OPTIONS, LOGGER, REDIS, type KitOptions, type Logger } from '@parley/kit';
import { OutboxRelay, addToOutbox } from '@parley/kit/database';

export type ChangeKind = 'user' | 'membership' | 'role' | 'grant' | 'bot' | 'key';

/** The Redis key whose value versions every cached decision and key lookup. */
export const epochKey = RedisKeys.accessEpoch;

/**
 * Announces changes to who may do what: an `evt.access.changed` in the same transaction
 * (through the outbox), and, once committed, a new epoch in Redis so that every cached
 * decision and key lookup on every instance is dropped at once.
 */
@Injectable()
export class AccessChanges {
  constructor(
    @Inject(OutboxRelay) private readonly relay: OutboxRelay,
    @Inject(REDIS) private readonly redis: Redis,
    @Inject(KIT_OPTIONS) private readonly options: KitOptions,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  record(tx: EntityManager, kind: ChangeKind, id: string): void {
    addToOutbox(tx, DomainEvents.accessChanged, { kind, id, occurred_at: new Date().toISOString() });
  }

  /** Call after the transaction that recorded changes has committed. */
  async committed(): Promise<void> {
    this.relay.kick();
    await this.bumpEpoch();
  }

  async bumpEpoch(): Promise<void> {
    try {
      await this.redis.incr(epochKey(this.options.config.NATS_SUBJECT_PREFIX));
    } catch (error) {
      // Cached entries expire on their own (seconds); a missed bump only delays, never widens, a revocation.
      this.logger.warn(
        { err: error instanceof Error ? error.message : String(error) },
        'could not bump the access epoch',
      );
    }
  }
}
