import { Inject, Injectable } from '@nestjs/common';
import { MikroORM } from '@mikro-orm/postgresql';
import * as argon2 from 'argon2';
import { createHash, randomBytes } from 'node:crypto';
import { v7 as uuidv7 } from 'uuid';
import type { Redis } from 'ioredis';
import { ParleyError, type TokenResponse } from '@parley/contracts';
import { KIT_OPTIONS, LOGGER, REDIS, type KitOptions, type Logger } from '@parley/kit';
import { ACCESS_CONFIG, type AccessConfig } from '../config';
import { UsersService, hashPassword } from '../users/users.service';
import type { User } from '../users/user.entity';
import { RefreshTokensRepository } from './refresh-tokens.repository';
import { addressKey } from './client-address';
import { FallbackCounters, MemoryCounters, RedisCounters } from './failure-counters';
import { KeysService } from './keys.service';
import { LoginAddressesRepository } from './login-addresses.repository';
import { LoginThrottle } from './login-throttle';

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

@Injectable()
export class AuthService {
  /** Verified against when a username is unknown, so both failures take the same time. */
  private readonly decoyHash = hashPassword(randomBytes(16).toString('hex'));
  private readonly throttle: LoginThrottle;

  constructor(
    @Inject(MikroORM) private readonly orm: MikroORM,
    @Inject(RefreshTokensRepository) private readonly tokens: RefreshTokensRepository,
    @Inject(ACCESS_CONFIG) private readonly config: AccessConfig,
    @Inject(UsersService) private readonly users: UsersService,
    @Inject(KeysService) private readonly keys: KeysService,
    @Inject(LoginAddressesRepository) private readonly knownAddresses: LoginAddressesRepository,
    @Inject(REDIS) redis: Redis,
    @Inject(KIT_OPTIONS) options: KitOptions,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {
    const counters = new FallbackCounters(redis, new RedisCounters(redis), new MemoryCounters(), (degraded, error) => {
      if (degraded) {
        this.logger.warn(
          { err: error instanceof Error ? error.message : String(error) },
          'login throttling counts in this instance while Redis is away',
        );
      } else {
        this.logger.info('login throttling counts in Redis again');
      }
    });
    this.throttle = new LoginThrottle(
      counters,
      {
        maxFailures: config.LOGIN_MAX_FAILURES,
        failureWindow: config.LOGIN_FAILURE_WINDOW,
        maxFailuresPerUser: config.LOGIN_MAX_FAILURES_PER_USER,
        userFailureWindow: config.LOGIN_USER_FAILURE_WINDOW,
        maxFailuresPerAddress: config.LOGIN_MAX_FAILURES_PER_ADDRESS,
      },
      options.config.NATS_SUBJECT_PREFIX,
    );
  }

  /**
   * Checks the password unless the login is throttled (docs/access-control.md, "Limits"):
   * failures count per username and client address, with ceilings per username and per address
   * that spare addresses the user signed in from before.
   */
  async login(username: string, password: string, clientAddress?: string): Promise<TokenResponse> {
    const address = addressKey(clientAddress);
    let user: User | null | undefined;
    const findUser = async () => (user === undefined ? (user = await this.users.findByUsername(username)) : user);
    const verdict = await this.throttle.check(username, address, async () => {
      const found = await findUser();
      return !!found && (await this.knownAddresses.has(found.id, address));
    });
    if (!verdict.allowed) {
      this.logger.debug({ username, address, limit: verdict.limit }, 'login throttled');
      throw new ParleyError('RATE_LIMITED', 'too many failed logins; try again later', {
        retryable: true,
        retryAfter: verdict.retryAfter,
      });
    }
    const found = await findUser();
    const valid = await argon2.verify(found?.passwordHash ?? (await this.decoyHash), password);
    if (!found || !valid || !found.enabled) {
      const reached = await this.throttle.recordFailure(username, address);
      for (const limit of reached) this.logger.warn({ username, address, limit }, 'failed logins reached a limit');
      throw new ParleyError('INVALID_CREDENTIALS', 'wrong username or password, or the user is disabled');
    }
    await this.throttle.recordSuccess(username, address);
    await this.knownAddresses.remember(found.id, address);
    return this.issue(found);
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
