import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import { ParleyError, RedisKeys, type Principal } from '@parley/contracts';
import { GuardedRedis, createLogger, type KitOptions } from '@parley/kit';
import { StreamLeases } from '../src/messages/stream-leases';
import { RateLimiter } from '../src/auth/rate-limiter';
import { loadConfig } from '../src/config';
import { freePort, runId } from '../../../test/support/stack';

const logger = createLogger('gateway-test', 'silent');
const prefix = runId('lim');
const config = loadConfig({
  NATS_SUBJECT_PREFIX: prefix,
  MAX_STREAMS_PER_PRINCIPAL: '3',
  MAX_EXPORTS_PER_PRINCIPAL: '2',
  RATE_LIMIT_PER_MINUTE: '3',
  STREAM_RECHECK_SECONDS: '1',
});
const options = { service: 'gateway', config } as KitOptions;
const user = (): Principal => ({ type: 'user', id: randomUUID(), is_admin: false });

const refusal = (work: Promise<unknown>) =>
  work.then(
    () => undefined,
    (error: unknown) => {
      if (!(error instanceof ParleyError)) throw error;
      return { code: error.code, status: error.status, retryable: error.retryable, retryAfter: error.retryAfter };
    },
  );

describe('stream and export limits, with Redis', () => {
  const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const redis = new GuardedRedis(redisUrl, { commandTimeoutMs: 2000 });
  // Two gateway instances sharing one Redis.
  const one = new StreamLeases(redis, config, options, logger);
  const two = new StreamLeases(redis, config, options, logger);

  afterAll(async () => {
    const keys = await redis.keys(`parley:${prefix}:*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
  });

  it('counts one principal’s streams across instances and refuses one more with 429', async () => {
    const alice = user();
    const held = [
      await one.acquire('stream', alice),
      await two.acquire('stream', alice),
      await one.acquire('stream', alice),
    ];
    expect(await refusal(two.acquire('stream', alice))).toEqual({
      code: 'TOO_MANY_STREAMS',
      status: 429,
      retryable: true,
      retryAfter: Math.ceil(one.leaseMs / 1000),
    });
    // Someone else is not affected.
    const bob = await two.acquire('stream', user());
    await held[1].release();
    const again = await one.acquire('stream', alice);
    expect(await refusal(one.acquire('stream', alice))).toMatchObject({ code: 'TOO_MANY_STREAMS' });
    for (const lease of [held[0], held[2], again, bob]) await lease.release();
    expect(one.heldHere('stream', alice) + two.heldHere('stream', alice)).toBe(0);
  });

  it('gives back the places of an instance that died once their leases lapse', async () => {
    const alice = user();
    const doomedRedis = new GuardedRedis(redisUrl, { commandTimeoutMs: 2000 });
    const doomed = new StreamLeases(doomedRedis, config, options, logger);
    for (let i = 0; i < 3; i++) await doomed.acquire('stream', alice);
    expect(await refusal(two.acquire('stream', alice))).toMatchObject({ code: 'TOO_MANY_STREAMS' });
    // The instance dies: nothing renews its leases any more, and their expiry goes by.
    doomedRedis.disconnect();
    const key = RedisKeys.gatewayLeases(prefix, 'stream', alice.type, alice.id);
    for (const id of await redis.zrange(key, 0, -1)) await redis.zadd(key, Date.now() - 1, id);
    const lease = await two.acquire('stream', alice);
    expect(await redis.zcard(key)).toBe(1);
    await lease.release();
  });

  it('renews a held lease before it lapses', async () => {
    const alice = user();
    const lease = await one.acquire('stream', alice);
    const key = RedisKeys.gatewayLeases(prefix, 'stream', alice.type, alice.id);
    const first = Number(await redis.zscore(key, lease.id));
    const deadline = Date.now() + 10_000;
    while (Number(await redis.zscore(key, lease.id)) <= first) {
      if (Date.now() > deadline) throw new Error('the lease was not renewed');
      await new Promise((r) => setTimeout(r, 200));
    }
    await lease.release();
    expect(await redis.zscore(key, lease.id)).toBeNull();
  });

  it('caps concurrent exports per principal', async () => {
    const alice = user();
    const a = await one.acquire('export', alice);
    const b = await two.acquire('export', alice);
    expect(await refusal(one.acquire('export', alice))).toEqual({
      code: 'TOO_MANY_EXPORTS',
      status: 429,
      retryable: true,
      retryAfter: 5,
    });
    // Exports and streams are counted apart.
    await (await one.acquire('stream', alice)).release();
    await a.release();
    await (await one.acquire('export', alice)).release();
    await b.release();
  });
});

describe('rate limits, with Redis', () => {
  const redis = new GuardedRedis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', { commandTimeoutMs: 2000 });
  // Two gateway instances sharing one Redis.
  const one = new RateLimiter(redis, config, options, logger);
  const two = new RateLimiter(redis, config, options, logger);

  afterAll(async () => {
    const keys = await redis.keys(`parley:${prefix}:*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
  });

  it('counts a principal across instances, refuses one more with 429, and lets every window key expire', async () => {
    const alice = user();
    await one.take(alice);
    await two.take(alice);
    await one.take(alice);
    expect(await refusal(two.take(alice))).toMatchObject({ code: 'RATE_LIMITED', status: 429, retryable: true });
    // Counted in Redis, not in either instance's memory.
    expect(await refusal(one.take(alice))).toMatchObject({ code: 'RATE_LIMITED' });
    await expect(one.take(user())).resolves.toBeUndefined();
    const keys = await redis.keys(`parley:${prefix}:*`);
    expect(keys.length).toBeGreaterThan(0);
    for (const key of keys) {
      if (!key.includes(alice.id)) continue;
      const ttl = await redis.ttl(key);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(120);
    }
  });

  it('counts concurrent requests exactly', async () => {
    const bob = user();
    const answers = await Promise.all(Array.from({ length: 10 }, () => refusal(one.take(bob))));
    expect(answers.filter((a) => a === undefined)).toHaveLength(3);
  });
});

describe('stream and rate limits, with Redis away', () => {
  let redis: GuardedRedis;
  let leases: StreamLeases;
  let limiter: RateLimiter;

  beforeAll(async () => {
    // Nothing listens on this port: every command fails, and each instance counts for itself.
    redis = new GuardedRedis(`redis://127.0.0.1:${await freePort()}`, { commandTimeoutMs: 300 });
    leases = new StreamLeases(redis, config, options, logger);
    limiter = new RateLimiter(redis, config, options, logger);
  });
  afterAll(() => redis.disconnect());

  it('counts streams in this instance memory against the same limit', async () => {
    const alice = user();
    const held = [];
    for (let i = 0; i < 3; i++) held.push(await leases.acquire('stream', alice));
    expect(await refusal(leases.acquire('stream', alice))).toMatchObject({ code: 'TOO_MANY_STREAMS', status: 429 });
    await held[0].release();
    held[0] = await leases.acquire('stream', alice);
    for (const lease of held) await lease.release();
    expect(leases.heldHere('stream', alice)).toBe(0);
  });

  it('rate-limits from this instance memory', async () => {
    const alice = user();
    for (let i = 0; i < 3; i++) await limiter.take(alice);
    expect(await refusal(limiter.take(alice))).toMatchObject({ code: 'RATE_LIMITED', status: 429, retryable: true });
    // Another principal has its own count.
    await expect(limiter.take(user())).resolves.toBeUndefined();
  });

  it('starts a new count in each minute window', () => {
    expect([1, 2, 3].map(() => limiter.countLocally('k', 1))).toEqual([1, 2, 3]);
    expect(limiter.countLocally('k', 2)).toBe(1);
  });
});
