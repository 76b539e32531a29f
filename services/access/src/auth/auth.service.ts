import { Inject, Injectable } from '@nestjs/common';
import { LockMode, MikroORM } from '@mikro-orm/postgresql';
import * as argon2 from 'argon2';
import { createHash, randomBytes } from 'node:crypto';
import { v7 as uuidv7 } from 'uuid';
import { ParleyError, type TokenResponse } from '@parley/contracts';
import { ACCESS_CONFIG, type AccessConfig } from '../config';
import { UsersService, hashPassword } from '../users/users.service';
import type { User } from '../users/user.entity';
import { RefreshTokenEntity } from './auth.entities';
import { KeysService } from './keys.service';

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

@Injectable()
export class AuthService {
  /** Verified against when a username is unknown, so both failures take the same time. */
  private readonly decoyHash = hashPassword(randomBytes(16).toString('hex'));

  constructor(
    @Inject(MikroORM) private readonly orm: MikroORM,
    @Inject(ACCESS_CONFIG) private readonly config: AccessConfig,
    @Inject(UsersService) private readonly users: UsersService,
    @Inject(KeysService) private readonly keys: KeysService,
  ) {}

  async login(username: string, password: string): Promise<TokenResponse> {
    const user = await this.users.findByUsername(username);
    const valid = await argon2.verify(user?.passwordHash ?? (await this.decoyHash), password);
    if (!user || !valid || !user.enabled) {
      throw new ParleyError('INVALID_CREDENTIALS', 'wrong username or password, or the user is disabled');
    }
    return this.issue(user);
  }

  async refresh(refreshToken: string): Promise<TokenResponse> {
    const em = this.orm.em.fork();
    const user = await em.transactional(async (tx) => {
      const token = await tx.findOne(RefreshTokenEntity, { tokenHash: sha256(refreshToken) }, { lockMode: LockMode.PESSIMISTIC_WRITE });
      if (!token || token.revokedAt || token.expiresAt.getTime() < Date.now()) {
        throw new ParleyError('INVALID_CREDENTIALS', 'refresh token is invalid, expired or already used');
      }
      token.revokedAt = new Date();
      return this.users.findById(token.userId);
    });
    if (!user || !user.enabled) throw new ParleyError('INVALID_CREDENTIALS', 'the user is disabled');
    return this.issue(user);
  }

  async logout(refreshToken: string): Promise<void> {
    await this.orm.em
      .fork()
      .nativeUpdate(RefreshTokenEntity, { tokenHash: sha256(refreshToken), revokedAt: null }, { revokedAt: new Date() });
  }

  private async issue(user: User): Promise<TokenResponse> {
    const refreshToken = randomBytes(32).toString('base64url');
    const now = new Date();
    const em = this.orm.em.fork();
    em.create(RefreshTokenEntity, {
      id: uuidv7(),
      userId: user.id,
      tokenHash: sha256(refreshToken),
      expiresAt: new Date(now.getTime() + this.config.REFRESH_TOKEN_TTL * 1000),
      revokedAt: null,
      createdAt: now,
    });
    await em.flush();
    const ttl = this.config.JWT_TTL;
    return {
      access_token: await this.keys.sign({ sub: user.id, adm: user.isAdmin }, ttl),
      token_type: 'Bearer',
      expires_in: ttl,
      refresh_token: refreshToken,
    };
  }
}
