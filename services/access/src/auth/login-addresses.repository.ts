import { Inject, Injectable } from '@nestjs/common';
import { MikroORM, type EntityManager } from '@mikro-orm/postgresql';
import { ACCESS_CONFIG, type AccessConfig } from '../config';
import { LoginAddressEntity } from './auth.entities';

/**
 * The addresses each user signed in from within LOGIN_KNOWN_ADDRESS_TTL, kept in the access
 * schema: they outlive a Redis restart and are there while Redis is away, which is when an
 * instance counts failures on its own.
 */
@Injectable()
export class LoginAddressesRepository {
  constructor(
    @Inject(MikroORM) private readonly orm: MikroORM,
    @Inject(ACCESS_CONFIG) private readonly config: AccessConfig,
  ) {}

  private cutoff(now = Date.now()): Date {
    return new Date(now - this.config.LOGIN_KNOWN_ADDRESS_TTL * 1000);
  }

  async has(userId: string, address: string): Promise<boolean> {
    const found = await this.orm.em
      .fork()
      .count(LoginAddressEntity, { userId, address, lastSuccessAt: { $gte: this.cutoff() } });
    return found > 0;
  }

  /** Records a successful sign-in and forgets the user's addresses that have gone stale. */
  async remember(userId: string, address: string): Promise<void> {
    const now = new Date();
    const em = this.orm.em.fork();
    await em.upsert(LoginAddressEntity, { userId, address, lastSuccessAt: now });
    await em.nativeDelete(LoginAddressEntity, { userId, lastSuccessAt: { $lt: this.cutoff(now.getTime()) } });
  }

  /** Inside the transaction that disables a user. */
  async forget(tx: EntityManager, userId: string): Promise<void> {
    await tx.nativeDelete(LoginAddressEntity, { userId });
  }
}
