import { Inject, Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { randomUUID } from 'node:crypto';
import { ParleyError, RedisKeys, type Principal } from '@parley/contracts';
import { KIT_OPTIONS, LOGGER, REDIS, type KitOptions, type Logger } from '@parley/kit';
import { GATEWAY_CONFIG, type GatewayConfig } from '../config';

export type LeaseKind = 'stream' | 'export';

/** A place held by one open stream or running export; give it back with `release`. */
export interface Lease {
  readonly id: string;
  release(): Promise<void>;
}

/** Seconds a caller over the export limit is asked to wait (an export is short). */
const EXPORT_RETRY_AFTER_SECONDS = 5;

/**
 * Takes a place if the principal holds fewer than `max` (expired places are dropped first).
 * Returns 1, or 0 when every place is taken.
 * KEYS[1]: the principal's leases; ARGV: now (ms), expiry (ms), lease id, max, key lifetime (ms).
 */
const ACQUIRE = `
redis.call('zremrangebyscore', KEYS[1], '-inf', ARGV[1])
if redis.call('zcard', KEYS[1]) >= tonumber(ARGV[4]) then
  return 0
end
redis.call('zadd', KEYS[1], ARGV[2], ARGV[3])
redis.call('pexpire', KEYS[1], ARGV[5])
return 1
`;

/**
 * How many live streams (and exports) each user or bot holds open at once, counted across
 * every gateway instance. Each open one holds a lease in Redis: a member of a sorted set per
 * principal, scored by the time it expires, which its holder pushes forward every
 * STREAM_RECHECK_SECONDS. A lease whose gateway died is not renewed and lapses within
 * `leaseMs`, giving its place back. With Redis away (or not answering) each instance counts
 * the leases it holds itself, against the same limit; once Redis answers again the renewals
 * put them back there.
 */
@Injectable()
export class StreamLeases {
  /** The leases this instance holds, by Redis key. */
  private readonly held = new Map<string, Set<string>>();

  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    @Inject(GATEWAY_CONFIG) private readonly config: GatewayConfig,
    @Inject(KIT_OPTIONS) private readonly options: KitOptions,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  /** How often a holder renews its lease. */
  get renewMs(): number {
    return this.config.STREAM_RECHECK_SECONDS * 1000;
  }

  /** How long a lease lives without renewal: two missed renewals and some slack. */
  get leaseMs(): number {
    return 2 * this.renewMs + 5000;
  }

  limit(kind: LeaseKind): number {
    return kind === 'stream' ? this.config.MAX_STREAMS_PER_PRINCIPAL : this.config.MAX_EXPORTS_PER_PRINCIPAL;
  }

  /** How many leases of this kind the principal holds on this instance. */
  heldHere(kind: LeaseKind, principal: Principal): number {
    return this.held.get(this.key(kind, principal))?.size ?? 0;
  }

  /** A place for one more stream or export of `principal`; 429 when all are taken. */
  async acquire(kind: LeaseKind, principal: Principal): Promise<Lease> {
    const key = this.key(kind, principal);
    const id = randomUUID();
    const max = this.limit(kind);
    const now = Date.now();
    let granted: boolean;
    try {
      const result = await this.redis.eval(ACQUIRE, 1, key, now, now + this.leaseMs, id, max, this.leaseMs);
      granted = Number(result) === 1;
    } catch (error) {
      this.logger.warn(
        { err: error instanceof Error ? error.message : String(error), kind },
        'counting open streams in this instance memory',
      );
      granted = (this.held.get(key)?.size ?? 0) < max;
    }
    if (!granted) throw this.refusal(kind, max);

    const mine = this.held.get(key) ?? new Set<string>();
    mine.add(id);
    this.held.set(key, mine);
    const renewal = setInterval(() => void this.renew(key, id), this.renewMs);
    renewal.unref();
    let released = false;
    return {
      id,
      release: async () => {
        if (released) return;
        released = true;
        clearInterval(renewal);
        mine.delete(id);
        if (mine.size === 0 && this.held.get(key) === mine) this.held.delete(key);
        await this.redis.zrem(key, id).catch(() => undefined);
      },
    };
  }

  private async renew(key: string, id: string): Promise<void> {
    await this.redis
      .multi()
      .zadd(key, Date.now() + this.leaseMs, id)
      .pexpire(key, this.leaseMs)
      .exec()
      .catch(() => undefined);
  }

  private refusal(kind: LeaseKind, max: number): ParleyError {
    return kind === 'stream'
      ? new ParleyError('TOO_MANY_STREAMS', `at most ${max} live streams open at once; close one first`, {
          retryable: true,
          retryAfter: Math.ceil(this.leaseMs / 1000),
        })
      : new ParleyError('TOO_MANY_EXPORTS', `at most ${max} exports at once; wait for one to finish`, {
          retryable: true,
          retryAfter: EXPORT_RETRY_AFTER_SECONDS,
        });
  }

  private key(kind: LeaseKind, principal: Principal): string {
    return RedisKeys.gatewayLeases(this.options.config.NATS_SUBJECT_PREFIX, kind, principal.type, principal.id);
  }
}
