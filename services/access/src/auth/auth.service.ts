import { Inject, Injectable } from '@nestjs/common';
import { MikroORM } from '@mikro-orm/postgresql';
import * as argon2 from 'argon2';
import { createHash, randomBytes } from 'node:crypto';
import { v7 as uuidv7 } from 'uuid';
import type { Redis } from 'ioredis';
import { ParleyError, RedisKeys, type TokenResponse } from '@parley/contracts';
import { KIT_OPTIONS, LOGGER, REDIS, type KitOptions, type Logger } from '@parley/kit';
import { ACCESS_CONFIG, type AccessConfig } from '../config';
import { UsersService, hashPassword } from '../users/users.service';
import type { User } from '../users/user.entity';
import { RefreshTokensRepository } from './refresh-tokens.repository';
import { KeysService } from './keys.service';

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** Failed logins allowed per username, and per client address, within the window. */
export const LOGIN_LIMITS = { perUser: 10, perAddress: 100, windowSeconds: 15 * 60 };

@Injectable()
export class AuthService {
  /** Verified against when a username is unknown, so both failures take the same time. */
  private readonly decoyHash = hashPassword(randomBytes(16).toString('hex'));

  constructor(
    @Inject(MikroORM) private readonly orm: MikroORM,
    @Inject(RefreshTokensRepository) private readonly tokens: RefreshTokensRepository,
    @Inject(ACCESS_CONFIG) private readonly config: AccessConfig,
    @Inject(UsersService) private readonly users: UsersService,
    @Inject(KeysService) private readonly keys: KeysService,
    @Inject(REDIS) private readonly redis: Redis,
    @Inject(KIT_OPTIONS) private readonly options: KitOptions,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  private throttleKeys(username: string, address?: string): string[] {
    const prefix = this.options.config.NATS_SUBJECT_PREFIX;
    return [
      RedisKeys.loginFailuresByUser(prefix, username),
      ...(address ? [RedisKeys.loginFailuresByAddress(prefix, address)] : []),
    ];
  }

  /** Refuses a login while its username or address has failed too often (Redis away: no throttling). */
  private async throttle(username: string, address?: string): Promise<void> {
    const keys = this.throttleKeys(username, address);
    try {
      const counts = (await this.redis.mget(...keys)).map((v) => Number(v ?? 0));
      const limited =
        counts[0] >= LOGIN_LIMITS.perUser ? keys[0] : (counts[1] ?? 0) >= LOGIN_LIMITS.perAddress ? keys[1] : undefined;
      if (limited) {
        const ttl = await this.redis.ttl(limited);
        throw new ParleyError('RATE_LIMITED', 'too many failed logins; try again later', {
          retryable: true,
          retryAfter: Math.max(ttl, 1),
        });
      }
    } catch (error) {
      if (error instanceof ParleyError) throw error;
      this.logger.warn({ err: error instanceof Error ? error.message : String(error) }, 'login throttling unavailable');
    }
  }

  private async recordFailure(username: string, address?: string): Promise<void> {
    const multi = this.redis.multi();
    for (const key of this.throttleKeys(username, address)) {
      multi.incr(key).expire(key, LOGIN_LIMITS.windowSeconds, 'NX');
    }
    await multi.exec().catch(() => undefined);
  }

  async login(username: string, password: string, address?: string): Promise<TokenResponse> {
    await this.throttle(username, address);
    const user = await this.users.findByUsername(username);
    const valid = await argon2.verify(user?.passwordHash ?? (await this.decoyHash), password);
    if (!user || !valid || !user.enabled) {
      await this.recordFailure(username, address);
      throw new ParleyError('INVALID_CREDENTIALS', 'wrong username or password, or the user is disabled');
    }
    await this.redis.del(this.throttleKeys(username)[0]).catch(() => undefined);
    return this.issue(user);
  }

  async refresh(refreshToken: string): Promise<TokenResponse> {
    const em = this.orm.em.fork();
    const user = await em.transactional(async (tx) => {
      const token = await this.tokens.lockByHash(tx, sha256(refreshToken));
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
    await this.tokens.revokeByHash(sha256(refreshToken));
  }

  private async issue(user: User): Promise<TokenResponse> {
    const refreshToken = randomBytes(32).toString('base64url');
    const now = new Date();
    await this.tokens.insert({
      id: uuidv7(),
      userId: user.id,
      tokenHash: sha256(refreshToken),
      expiresAt: new Date(now.getTime() + this.config.REFRESH_TOKEN_TTL * 1000),
      createdAt: now,
    });
    const ttl = this.config.JWT_TTL;
    return {
      access_token: await this.keys.sign({ sub: user.id, adm: user.isAdmin }, ttl),
      token_type: 'Bearer',
      expires_in: ttl,
      refresh_token: refreshToken,
    };
  }
}
