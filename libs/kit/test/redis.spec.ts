import { GuardedRedis, type Logger } from '../src';
import { startOwnRedis, type OwnRedis } from '../../../test/support/redis';
import { startOwnRedisServer, type OwnInfrastructure } from '../../../test/support/infra';

/** A Redis that stops answering (SIGSTOP: connections stay open, nothing comes back). */
describe(GuardedRedis.name, () => {
  let server: OwnRedis;
  let redis: GuardedRedis;

  beforeAll(async () => {
    server = await startOwnRedis();
    redis = new GuardedRedis(server.url, { commandTimeoutMs: 200, quietMs: 1000 });
  });

  afterAll(async () => {
    redis?.disconnect();
    await server?.stop();
  });

  const failure = (work: Promise<unknown>) =>
    work.then(
      () => undefined,
      (error: unknown) => (error instanceof Error ? error.message : String(error)),
    );

  it('fails a command Redis does not answer, then fails the next ones at once, and recovers', async () => {
    await redis.set('k', 'v');
    expect(await redis.get('k')).toBe('v');

    server.pause();
    try {
      expect(await failure(redis.get('k'))).toBe('Command timed out');
      expect(redis.unresponsive).toBe(true);
      // Nothing more is sent while Redis is taken as unresponsive: the command fails without waiting.
      expect(await failure(redis.multi().incr('n').expire('n', 60).exec())).toMatch(/not answering|timed out/);
      expect(await failure(redis.get('k'))).toMatch(/Redis is not answering/);
    } finally {
      server.resume();
    }

    const deadline = Date.now() + 15_000;
    for (;;) {
      const value = await redis.get('k').catch(() => undefined);
      if (value === 'v') break;
      if (Date.now() > deadline) throw new Error('Redis was not used again after it answered');
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(redis.unresponsive).toBe(false);
  });
});

/** A Redis killed with SIGKILL and started again on the same port. */
describe(`${GuardedRedis.name}, Redis gone`, () => {
  let server: OwnInfrastructure;
  let redis: GuardedRedis;
  const lines: { level: string; msg: string }[] = [];
  const logger = {
    warn: (_fields: unknown, msg: string) => lines.push({ level: 'warn', msg }),
    info: (msg: string) => lines.push({ level: 'info', msg }),
  } as unknown as Logger;

  beforeAll(async () => {
    server = await startOwnRedisServer();
    redis = new GuardedRedis(server.url, { commandTimeoutMs: 500, logger });
  });

  afterAll(async () => {
    redis?.disconnect();
    await server?.stop();
  });

  it('fails commands at once while Redis is gone, logs it once, and uses it again once it is back', async () => {
    await redis.set('k', 'v');
    await server.kill();
    // Whatever state the client is in (connection lost, reconnecting), no command waits.
    for (let i = 0; i < 20; i++) {
      const started = Date.now();
      await expect(redis.get('k')).rejects.toThrow();
      expect(Date.now() - started).toBeLessThan(400);
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(lines).toEqual([{ level: 'warn', msg: 'Redis is away; going on without it' }]);

    await server.restart();
    const deadline = Date.now() + 15_000;
    for (;;) {
      const value = await redis.get('k').catch(() => undefined);
      if (value !== undefined) break;
      if (Date.now() > deadline) throw new Error('Redis was not used again after it came back');
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(lines).toEqual([
      { level: 'warn', msg: 'Redis is away; going on without it' },
      { level: 'info', msg: 'Redis answers again' },
    ]);
  });
});
