import { Inject, Injectable } from '@nestjs/common';
import { LockMode, MikroORM, type EntityManager } from '@mikro-orm/postgresql';
import { RefreshTokenEntity, type RefreshToken } from './auth.entities';

/** The refresh tokens' SQL. Writes that belong to a caller's transaction take it. */
@Injectable()
export class RefreshTokensRepository {
  constructor(@Inject(MikroORM) private readonly orm: MikroORM) {}

  async insert(token: Omit<RefreshToken, 'revokedAt'>): Promise<void> {
    const em = this.orm.em.fork();
    em.create(RefreshTokenEntity, { ...token, revokedAt: null });
    await em.flush();
  }

  /** The token with this hash, locked until the transaction ends (so it is rotated once). */
  lockByHash(tx: EntityManager, tokenHash: string): Promise<RefreshToken | null> {
    return tx.findOne(RefreshTokenEntity, { tokenHash }, { lockMode: LockMode.PESSIMISTIC_WRITE });
  }

  async revokeByHash(tokenHash: string): Promise<void> {
    await this.orm.em
      .fork()
      .nativeUpdate(RefreshTokenEntity, { tokenHash, revokedAt: null }, { revokedAt: new Date() });
  }

  /** Revokes every live refresh token of the user. */
  async revokeAllOf(tx: EntityManager, userId: string): Promise<void> {
    await tx.nativeUpdate(RefreshTokenEntity, { userId, revokedAt: null }, { revokedAt: new Date() });
  }
}
