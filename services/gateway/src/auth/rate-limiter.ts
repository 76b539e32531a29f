import { Inject, Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { ParleyError, RedisKeys, type Principal } from '@parley/contracts';
import { KIT_OPTIONS, LOGGER, REDIS, type KitOptions, type Logger } from '@parley/kit';
import { GATEWAY_CONFIG, type GatewayConfig } from '../config';

/**
 * One round trip and one command: count the request in its window, and give a new window's
 * key its expiry in the same atomic step (no key is ever left without one).
 */
const TAKE_SCRIPT = `local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count`;

type WithTake = Redis & { parleyRateTake(key: string, ttlSeconds: number): Promise<number> };

/** Most principals counted in memory in one window; beyond, the count starts again. */
const MAX_LOCAL_KEYS = 100_000;

/**
 * Requests per principal per minute (fixed one-minute windows in Redis), shared by every
 * gateway instance. Over the limit: 429 with Retry-After. Redis away (or not answering): each
 * instance counts in its own memory, with the same limit.
 */
@Injectable()
export class RateLimiter {
  private readonly local = new Map<string, number>();
  private localWindow = -1;
  /** Counting in memory since Redis failed (logged once each way). */
  private inMemory = false;

  private readonly redis: WithTake;

  constructor(
    @Inject(REDIS) redis: Redis,
    @Inject(GATEWAY_CONFIG) private readonly config: GatewayConfig,
    @Inject(KIT_OPTIONS) private readonly options: KitOptions,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {
    // Sent as EVALSHA (the script text only when Redis does not know it yet).
    if (!('parleyRateTake' in redis)) redis.defineCommand('parleyRateTake', { numberOfKeys: 1, lua: TAKE_SCRIPT });
    this.redis = redis as WithTake;
  }

  async take(principal: Principal): Promise<void> {
    const limit = principal.type === 'bot' ? this.config.BOT_RATE_LIMIT_PER_MINUTE : this.config.RATE_LIMIT_PER_MINUTE;
    const window = Math.floor(Date.now() / 60_000);
    const key = RedisKeys.rateWindow(this.options.config.NATS_SUBJECT_PREFIX, principal.type, principal.id, window);
    let count: number;
    try {
      count = Number(await this.redis.parleyRateTake(key, 120));
      if (this.inMemory) {
        this.inMemory = false;
        this.logger.info('rate limiting in Redis again');
      }
    } catch (error) {
      if (!this.inMemory) {
        this.inMemory = true;
        this.logger.warn(
          { err: error instanceof Error ? error.message : String(error) },
          'rate limiting from this instance memory while Redis is away',
        );
      }
      count = this.countLocally(key, window);
    }
    if (count > limit) {
      const retryAfter = Math.max(1, Math.ceil(((window + 1) * 60_000 - Date.now()) / 1000));
      throw new ParleyError('RATE_LIMITED', `more than ${limit} requests a minute`, { retryable: true, retryAfter });
    }
  }

  /** The request's number in its window, counted by this instance alone. */
  countLocally(key: string, window: number): number {
    if (window !== this.localWindow || this.local.size >= MAX_LOCAL_KEYS) {
      this.local.clear();
      this.localWindow = window;
    }
    const count = (this.local.get(key) ?? 0) + 1;
    this.local.set(key, count);
    return count;
  }
}
