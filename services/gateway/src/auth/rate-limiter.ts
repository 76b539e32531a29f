import { Inject, Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { ParleyError, RedisKeys, type Principal } from '@parley/contracts';
import { KIT_OPTIONS, LOGGER, REDIS, type KitOptions, type Logger } from '@parley/kit';
import { GATEWAY_CONFIG, type GatewayConfig } from '../config';

/**
 * One round trip and one command: count `ARGV[2]` requests in the window, and give a new
 * window's key its expiry in the same atomic step (no key is ever left without one).
 */
const TAKE_SCRIPT = `local count = redis.call('INCRBY', KEYS[1], ARGV[2])
if count == tonumber(ARGV[2]) then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count`;

type WithTake = Redis & { parleyRateTake(key: string, ttlSeconds: number, amount: number): Promise<number> };

/** Most principals counted in memory in one window; beyond, the count starts again. */
const MAX_LOCAL_KEYS = 100_000;

/** The most requests one reservation takes from Redis. */
const MAX_LEASE = 64;

/**
 * The requests one reservation takes for a limit, with `counted` already counted in the
 * window: at most a hundredth of the limit and an eighth of what is left of it, at least one.
 * Below a limit of 200 every request is counted on its own.
 */
export function leaseSize(limit: number, counted: number): number {
  return Math.max(1, Math.min(MAX_LEASE, Math.floor(limit / 100), Math.floor((limit - counted) / 8)));
}

/** Requests a principal may still make in a window without asking Redis, on this instance. */
interface Lease {
  /** Taken from Redis and not used yet. */
  left: number;
  /** The window's count in Redis after this instance's last reservation. */
  counted: number;
  /** The reservation under way, which requests arriving meanwhile wait for. */
  pending?: Promise<boolean>;
}

/**
 * Requests per principal per minute (fixed one-minute windows in Redis), shared by every
 * gateway instance. Over the limit: 429 with Retry-After. Redis away (or not answering): each
 * instance counts in its own memory, with the same limit.
 *
 * An instance reserves requests in Redis a few at a time (`leaseSize`) and lets them through
 * from memory, so a busy principal costs Redis one command per reservation, not per request.
 * The count in Redis is then ahead of the requests made by what instances hold unused: one
 * instance is refused at most a hundredth of the limit early per other instance holding a
 * reservation, and never lets more than the limit through (decisions/0029).
 */
@Injectable()
export class RateLimiter {
  private readonly local = new Map<string, number>();
  private localWindow = -1;
  private readonly leases = new Map<string, Lease>();
  private leaseWindow = -1;
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
    if (window !== this.leaseWindow || this.leases.size >= MAX_LOCAL_KEYS) {
      this.leases.clear();
      this.leaseWindow = window;
    }
    let lease = this.leases.get(key);
    if (!lease) {
      lease = { left: 0, counted: 0 };
      this.leases.set(key, lease);
    }
    for (;;) {
      if (lease.left > 0) {
        lease.left--;
        return;
      }
      if (lease.counted >= limit) break;
      const current = lease;
      current.pending ??= this.reserve(current, key, limit).finally(() => {
        current.pending = undefined;
      });
      if (!(await current.pending)) {
        // Redis away: each request waiting on the reservation is counted in memory instead.
        if (this.countLocally(key, window) <= limit) return;
        break;
      }
    }
    const retryAfter = Math.max(1, Math.ceil(((window + 1) * 60_000 - Date.now()) / 1000));
    throw new ParleyError('RATE_LIMITED', `more than ${limit} requests a minute`, { retryable: true, retryAfter });
  }

  /** Reserves requests in Redis for the lease: false when Redis is away. */
  private async reserve(lease: Lease, key: string, limit: number): Promise<boolean> {
    const amount = leaseSize(limit, lease.counted);
    let count: number;
    try {
      count = Number(await this.redis.parleyRateTake(key, 120, amount));
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
      return false;
    }
    lease.counted = count;
    // What was reserved beyond the limit is refused: the count stays over it all the window.
    lease.left = Math.max(0, Math.min(amount, limit - (count - amount)));
    return true;
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
