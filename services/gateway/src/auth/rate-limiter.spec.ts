import 'reflect-metadata';
import type { Redis } from 'ioredis';
import { ParleyError, type Principal } from '@parley/contracts';
import type { KitOptions, Logger } from '@parley/kit';
import { loadConfig } from '../config';
import { RateLimiter, leaseSize } from './rate-limiter';

/** A Redis stand-in whose rate script counts in a map, or fails while `away`. */
class FlakyRedis {
  away = false;
  calls = 0;
  readonly counts = new Map<string, number>();
  defineCommand(): void {
    // the script is this class's parleyRateTake
  }
  async parleyRateTake(key: string, _ttl: number, amount: number): Promise<number> {
    this.calls++;
    if (this.away) throw new Error('Redis is away (connection reconnecting)');
    const n = (this.counts.get(key) ?? 0) + amount;
    this.counts.set(key, n);
    return n;
  }
}

const config = loadConfig({ NATS_SUBJECT_PREFIX: 'unit', RATE_LIMIT_PER_MINUTE: '3' });
const options = { service: 'gateway', config } as KitOptions;
const alice: Principal = { type: 'user', id: '00000000-0000-4000-8000-00000000000a', is_admin: false };
const bob: Principal = { type: 'user', id: '00000000-0000-4000-8000-00000000000b', is_admin: false };

function logger() {
  const lines: { level: string; msg: string }[] = [];
  const log = {
    warn: (_fields: unknown, msg: string) => lines.push({ level: 'warn', msg }),
    info: (msg: string) => lines.push({ level: 'info', msg }),
  } as unknown as Logger;
  return { log, lines };
}

const refusal = (work: Promise<unknown>) =>
  work.then(
    () => undefined,
    (error: unknown) => (error instanceof ParleyError ? error.code : String(error)),
  );

describe('RateLimiter with Redis away', () => {
  // Within one minute window: the test's calls must not straddle one.
  beforeEach(() => {
    jest.useFakeTimers({ now: new Date('2026-12-01T10:00:05Z'), doNotFake: ['nextTick', 'setImmediate'] });
  });
  afterEach(() => jest.useRealTimers());

  it('counts in this instance memory against the same limit, not failing open', async () => {
    const redis = new FlakyRedis();
    const { log } = logger();
    const limiter = new RateLimiter(redis as unknown as Redis, config, options, log);
    redis.away = true;
    for (let i = 0; i < 3; i++) await limiter.take(alice);
    expect(await refusal(limiter.take(alice))).toBe('RATE_LIMITED');
    // Someone else has a count of their own.
    expect(await refusal(limiter.take(bob))).toBeUndefined();
    expect(redis.counts.size).toBe(0);
  });

  it('goes back to Redis once it answers, and logs each change once, not per request', async () => {
    const redis = new FlakyRedis();
    const { log, lines } = logger();
    const limiter = new RateLimiter(redis as unknown as Redis, config, options, log);
    await limiter.take(alice);
    redis.away = true;
    await limiter.take(bob);
    await limiter.take(bob);
    redis.away = false;
    await limiter.take(alice);
    await limiter.take(alice);
    // Counted in Redis again: alice's two requests there and one before make three.
    expect(await refusal(limiter.take(alice))).toBe('RATE_LIMITED');
    expect(lines).toEqual([
      { level: 'warn', msg: 'rate limiting from this instance memory while Redis is away' },
      { level: 'info', msg: 'rate limiting in Redis again' },
    ]);
  });

  it('starts a new count in memory in the next minute window', async () => {
    const redis = new FlakyRedis();
    redis.away = true;
    const limiter = new RateLimiter(redis as unknown as Redis, config, options, logger().log);
    for (let i = 0; i < 3; i++) await limiter.take(alice);
    expect(await refusal(limiter.take(alice))).toBe('RATE_LIMITED');
    jest.setSystemTime(new Date('2026-12-01T10:01:01Z'));
    expect(await refusal(limiter.take(alice))).toBeUndefined();
  });
});

describe('RateLimiter reservations', () => {
  beforeEach(() => {
    jest.useFakeTimers({ now: new Date('2026-12-01T10:00:05Z'), doNotFake: ['nextTick', 'setImmediate'] });
  });
  afterEach(() => jest.useRealTimers());

  const thousand = loadConfig({ NATS_SUBJECT_PREFIX: 'unit', RATE_LIMIT_PER_MINUTE: '1000' });
  const limiterOf = (redis: FlakyRedis) =>
    new RateLimiter(
      redis as unknown as Redis,
      thousand,
      { service: 'gateway', config: thousand } as KitOptions,
      logger().log,
    );

  it('reserves a hundredth of the limit at most, an eighth of what is left, and one below 200', () => {
    expect(leaseSize(60, 0)).toBe(1);
    expect(leaseSize(199, 0)).toBe(1);
    expect(leaseSize(600, 0)).toBe(6);
    expect(leaseSize(100_000_000, 0)).toBe(64);
    expect(leaseSize(10_000, 9_900)).toBe(12);
    expect(leaseSize(1000, 990)).toBe(1);
    expect(leaseSize(1000, 1200)).toBe(1);
  });

  it('lets exactly the limit through, asking Redis once per reservation', async () => {
    const redis = new FlakyRedis();
    const limiter = limiterOf(redis);
    for (let i = 0; i < 1000; i++) expect(await refusal(limiter.take(alice))).toBeUndefined();
    expect(await refusal(limiter.take(alice))).toBe('RATE_LIMITED');
    // Reservations of 10 while far from the limit, smaller near it.
    expect(redis.calls).toBeGreaterThan(100);
    expect(redis.calls).toBeLessThan(140);
    // Refused from memory once the count has reached the limit.
    const calls = redis.calls;
    expect(await refusal(limiter.take(alice))).toBe('RATE_LIMITED');
    expect(redis.calls).toBe(calls);
  });

  it('shares one reservation among the requests that arrive while it is under way', async () => {
    const redis = new FlakyRedis();
    const limiter = limiterOf(redis);
    const answers = await Promise.all(Array.from({ length: 1010 }, () => refusal(limiter.take(alice))));
    expect(answers.filter((a) => a === undefined)).toHaveLength(1000);
    expect(answers.filter((a) => a === 'RATE_LIMITED')).toHaveLength(10);
    expect(redis.calls).toBeLessThan(140);
  });

  it('never lets more than the limit through two instances, and refuses at most a reservation early', async () => {
    const redis = new FlakyRedis();
    const [a, b] = [limiterOf(redis), limiterOf(redis)];
    let passed = 0;
    for (let i = 0; i < 1500; i++) {
      // Mostly the first instance, now and then the second: it holds a reservation unused.
      if ((await refusal((i % 7 === 0 ? b : a).take(alice))) === undefined) passed++;
    }
    expect(passed).toBeLessThanOrEqual(1000);
    expect(passed).toBeGreaterThanOrEqual(1000 - leaseSize(1000, 0));
  });

  it('counts each waiting request in memory when the reservation fails', async () => {
    const redis = new FlakyRedis();
    redis.away = true;
    const limiter = limiterOf(redis);
    const answers = await Promise.all(Array.from({ length: 1005 }, () => refusal(limiter.take(alice))));
    expect(answers.filter((a) => a === undefined)).toHaveLength(1000);
    expect(answers.filter((a) => a === 'RATE_LIMITED')).toHaveLength(5);
  });
});
