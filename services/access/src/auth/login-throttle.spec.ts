import type { Redis } from 'ioredis';
import { addressKey } from './client-address';
import { FallbackCounters, MemoryCounters, type Counters } from './failure-counters';
import { LoginThrottle, type LoginLimits } from './login-throttle';

const limits: LoginLimits = {
  maxFailures: 3,
  failureWindow: 900,
  maxFailuresPerUser: 7,
  userFailureWindow: 3600,
  maxFailuresPerAddress: 5,
};

/** A clock the test moves, and a throttle counting in memory by it. */
function setup() {
  let now = Date.parse('2026-11-30T12:00:00Z');
  const counters = new MemoryCounters(100_000, () => now);
  const throttle = new LoginThrottle(counters, limits, 'test');
  const known = new Set<string>();
  const asked: string[] = [];
  const check = (username: string, address: string) =>
    throttle.check(username, address, () => {
      asked.push(`${username}@${address}`);
      return Promise.resolve(known.has(`${username}@${address}`));
    });
  const fail = async (username: string, address: string, times = 1) => {
    for (let i = 0; i < times; i++) await throttle.recordFailure(username, address);
  };
  return { throttle, counters, known, asked, check, fail, advance: (seconds: number) => (now += seconds * 1000) };
}

describe(LoginThrottle.name, () => {
  it('refuses a username from an address after its failures there, and not from another address', async () => {
    const t = setup();
    await t.fail('alice', '203.0.113.7', 2);
    expect(await t.check('alice', '203.0.113.7')).toEqual({ allowed: true });
    await t.fail('alice', '203.0.113.7');
    expect(await t.check('alice', '203.0.113.7')).toEqual({ allowed: false, limit: 'user-address', retryAfter: 900 });
    expect(await t.check('alice', '198.51.100.9')).toEqual({ allowed: true });
    expect(await t.check('bob', '203.0.113.7')).toEqual({ allowed: true });
    expect(t.asked).toEqual([]);
  });

  it('lets the pair try again when its window has passed, with Retry-After counting down', async () => {
    const t = setup();
    await t.fail('alice', '203.0.113.7', 3);
    t.advance(600);
    expect(await t.check('alice', '203.0.113.7')).toMatchObject({ allowed: false, retryAfter: 300 });
    t.advance(300);
    expect(await t.check('alice', '203.0.113.7')).toEqual({ allowed: true });
  });

  it('counts an IPv6 /64 as one address and an IPv4-mapped address as its IPv4 address', async () => {
    const t = setup();
    await t.fail('alice', addressKey('2001:db8:1:2::1'));
    await t.fail('alice', addressKey('2001:db8:1:2:ffff::9'));
    await t.fail('alice', addressKey('2001:db8:1:2:0:0:0:abcd'));
    expect(await t.check('alice', addressKey('2001:db8:1:2::77'))).toMatchObject({ allowed: false });
    expect(await t.check('alice', addressKey('2001:db8:1:3::1'))).toEqual({ allowed: true });

    await t.fail('bob', addressKey('::ffff:192.0.2.1'), 3);
    expect(await t.check('bob', addressKey('192.0.2.1'))).toMatchObject({ allowed: false, limit: 'user-address' });
  });

  it('counts usernames without regard to case', async () => {
    const t = setup();
    await t.fail('Alice', '203.0.113.7', 3);
    expect(await t.check('alice', '203.0.113.7')).toMatchObject({ allowed: false });
  });

  it('clears the pair on success but keeps the ceilings counting', async () => {
    const t = setup();
    await t.fail('alice', '203.0.113.7', 2);
    await t.throttle.recordSuccess('alice', '203.0.113.7');
    await t.fail('alice', '203.0.113.7', 2);
    expect(await t.check('alice', '203.0.113.7')).toEqual({ allowed: true });
    const [user] = await t.counters.read(['parley:test:login:user:alice']);
    expect(user.count).toBe(4);
  });

  it('past the per-username ceiling, refuses new addresses and lets known ones try', async () => {
    const t = setup();
    // Seven addresses, one failure each: no pair is near its limit, the username is at its ceiling.
    for (let i = 1; i <= 7; i++) await t.fail('alice', `203.0.113.${i}`);
    t.known.add('alice@198.51.100.9');
    expect(await t.check('alice', '203.0.113.99')).toEqual({ allowed: false, limit: 'user', retryAfter: 3600 });
    expect(await t.check('alice', '198.51.100.9')).toEqual({ allowed: true });
    expect(t.asked).toEqual(['alice@203.0.113.99', 'alice@198.51.100.9']);
    // Other usernames are untouched.
    expect(await t.check('bob', '203.0.113.99')).toEqual({ allowed: true });
    t.advance(3600);
    expect(await t.check('alice', '203.0.113.99')).toEqual({ allowed: true });
  });

  it('still holds a known address to its own pair limit', async () => {
    const t = setup();
    t.known.add('alice@198.51.100.9');
    await t.fail('alice', '198.51.100.9', 3);
    expect(await t.check('alice', '198.51.100.9')).toMatchObject({ allowed: false, limit: 'user-address' });
  });

  it('past the per-address ceiling, refuses that address for usernames not known there, and no other address', async () => {
    const t = setup();
    for (const name of ['u1', 'u2', 'u3', 'u4', 'u5']) await t.fail(name, '203.0.113.7');
    t.known.add('carol@203.0.113.7');
    expect(await t.check('dave', '203.0.113.7')).toEqual({ allowed: false, limit: 'address', retryAfter: 900 });
    expect(await t.check('carol', '203.0.113.7')).toEqual({ allowed: true });
    expect(await t.check('dave', '198.51.100.9')).toEqual({ allowed: true });
  });

  it('waits for the later of two ceilings', async () => {
    const t = setup();
    for (let i = 1; i <= 7; i++) await t.fail('alice', `203.0.113.${i}`);
    t.advance(3000);
    for (const name of ['u1', 'u2', 'u3', 'u4', 'u5']) await t.fail(name, '192.0.2.1');
    expect(await t.check('alice', '192.0.2.1')).toEqual({ allowed: false, limit: 'user', retryAfter: 900 });
  });

  it('reports each limit once, on the failure that reaches it', async () => {
    const t = setup();
    const reached: string[][] = [];
    for (let i = 0; i < 4; i++) reached.push(await t.throttle.recordFailure('alice', '203.0.113.7'));
    expect(reached).toEqual([[], [], ['user-address'], []]);
  });
});

describe(MemoryCounters.name, () => {
  it('keeps at most its bound, dropping the oldest window first', async () => {
    const counters = new MemoryCounters(3);
    for (const key of ['a', 'b', 'c', 'd']) await counters.increment([{ key, windowSeconds: 60 }]);
    expect(counters.size).toBe(3);
    expect((await counters.read(['a', 'b', 'd'])).map((s) => s.count)).toEqual([0, 1, 1]);
  });

  it('forgets a window when it ends', async () => {
    let now = 0;
    const counters = new MemoryCounters(10, () => now);
    await counters.increment([{ key: 'a', windowSeconds: 10 }]);
    await counters.increment([{ key: 'a', windowSeconds: 10 }]);
    now = 9_500;
    expect(await counters.read(['a'])).toEqual([{ count: 2, ttlSeconds: 1 }]);
    now = 10_000;
    expect(await counters.read(['a'])).toEqual([{ count: 0, ttlSeconds: 0 }]);
    expect(await counters.increment([{ key: 'a', windowSeconds: 10 }])).toEqual([1]);
  });
});

describe(FallbackCounters.name, () => {
  /** A Redis stand-in whose connection state and failures the test sets. */
  class FlakyCounters implements Counters {
    status: Redis['status'] = 'ready';
    failing = false;
    readonly inner = new MemoryCounters();
    private guard() {
      if (this.failing) return Promise.reject(new Error('Connection is closed.'));
      return undefined;
    }
    read(keys: string[]) {
      return this.guard() ?? this.inner.read(keys);
    }
    increment(entries: { key: string; windowSeconds: number }[]) {
      return this.guard() ?? this.inner.increment(entries);
    }
    reset(key: string) {
      return this.guard() ?? this.inner.reset(key);
    }
  }

  it('counts in memory while Redis is away and in Redis again once it is back, saying so once each way', async () => {
    const redis = new FlakyCounters();
    const memory = new MemoryCounters();
    const changes: boolean[] = [];
    const counters = new FallbackCounters(redis, redis, memory, (degraded) => changes.push(degraded));
    const throttle = new LoginThrottle(counters, limits, 'test');

    await throttle.recordFailure('alice', '203.0.113.7');
    redis.failing = true;
    await throttle.recordFailure('alice', '203.0.113.7');
    redis.failing = false;
    redis.status = 'reconnecting';
    await throttle.recordFailure('alice', '203.0.113.7');
    // Two failures counted here while Redis was away, and not a refusal or an error.
    expect(await throttle.check('alice', '203.0.113.7', () => Promise.resolve(false))).toEqual({ allowed: true });
    await throttle.recordFailure('alice', '203.0.113.7');
    expect(await throttle.check('alice', '203.0.113.7', () => Promise.resolve(false))).toMatchObject({
      allowed: false,
      limit: 'user-address',
    });

    redis.status = 'ready';
    expect(await throttle.check('alice', '203.0.113.7', () => Promise.resolve(false))).toEqual({ allowed: true });
    const [pair] = await redis.inner.read(['parley:test:login:pair:203.0.113.7|alice']);
    expect(pair.count).toBe(1);
    expect(changes).toEqual([true, false]);
  });
});
