import { RedisKeys } from '@parley/contracts';
import type { Counters } from './failure-counters';

export interface LoginLimits {
  /** Failures for one username from one address (its key: `addressKey`) within `failureWindow`. */
  maxFailures: number;
  failureWindow: number;
  /** Failures for one username from every address within `userFailureWindow`. */
  maxFailuresPerUser: number;
  userFailureWindow: number;
  /** Failures from one address for every username within `failureWindow`. */
  maxFailuresPerAddress: number;
}

/**
 * Which limit refused a login: `user-address` (this username from this address), `user`
 * (this username from everywhere, the address unknown to it) or `address` (every username from
 * this address, the username unknown to it).
 */
export type LoginLimit = 'user-address' | 'user' | 'address';

export type LoginVerdict = { allowed: true } | { allowed: false; limit: LoginLimit; retryAfter: number };

/**
 * Counts failed logins three ways and decides whether a login may be tried:
 * - per (username, address): over the limit, that pair waits. An attacker's failures from
 *   their address never stop the user signing in from another.
 * - per username: over the ceiling, the username may be tried only from addresses it signed in
 *   from before, so many addresses together cannot guess one password without end, and the user
 *   at a known address still gets in.
 * - per address: over the ceiling (password spraying), the address may try only usernames that
 *   signed in from it before; other addresses are untouched.
 * A success clears its (username, address) count only: the two ceilings keep counting, or an
 * attacker holding one account could wipe them.
 */
export class LoginThrottle {
  constructor(
    private readonly counters: Counters,
    private readonly limits: LoginLimits,
    private readonly prefix: string,
  ) {}

  private keys(username: string, address: string) {
    return {
      pair: RedisKeys.loginFailuresByUserAddress(this.prefix, username, address),
      user: RedisKeys.loginFailuresByUser(this.prefix, username),
      address: RedisKeys.loginFailuresByAddress(this.prefix, address),
    };
  }

  /** `isKnown` (has this username signed in from this address before?) is asked only past a ceiling. */
  async check(username: string, address: string, isKnown: () => Promise<boolean>): Promise<LoginVerdict> {
    const keys = this.keys(username, address);
    const [pair, user, byAddress] = await this.counters.read([keys.pair, keys.user, keys.address]);
    if (pair.count >= this.limits.maxFailures) {
      return { allowed: false, limit: 'user-address', retryAfter: Math.max(1, pair.ttlSeconds) };
    }
    const over: { limit: LoginLimit; ttlSeconds: number }[] = [];
    if (user.count >= this.limits.maxFailuresPerUser) over.push({ limit: 'user', ttlSeconds: user.ttlSeconds });
    if (byAddress.count >= this.limits.maxFailuresPerAddress) {
      over.push({ limit: 'address', ttlSeconds: byAddress.ttlSeconds });
    }
    if (over.length === 0 || (await isKnown())) return { allowed: true };
    return {
      allowed: false,
      limit: over[0].limit,
      retryAfter: Math.max(1, ...over.map((o) => o.ttlSeconds)),
    };
  }

  /** Counts a failure; answers the limits this failure has just reached (for the log). */
  async recordFailure(username: string, address: string): Promise<LoginLimit[]> {
    const keys = this.keys(username, address);
    const { failureWindow, userFailureWindow } = this.limits;
    const [pair, user, byAddress] = await this.counters.increment([
      { key: keys.pair, windowSeconds: failureWindow },
      { key: keys.user, windowSeconds: userFailureWindow },
      { key: keys.address, windowSeconds: failureWindow },
    ]);
    const reached: LoginLimit[] = [];
    if (pair === this.limits.maxFailures) reached.push('user-address');
    if (user === this.limits.maxFailuresPerUser) reached.push('user');
    if (byAddress === this.limits.maxFailuresPerAddress) reached.push('address');
    return reached;
  }

  async recordSuccess(username: string, address: string): Promise<void> {
    await this.counters.reset(this.keys(username, address).pair);
  }
}
