import type { Redis } from 'ioredis';

/** A counter in a fixed window: how many so far, and the seconds until the window ends (0: no window). */
export interface CounterState {
  count: number;
  ttlSeconds: number;
}

/** Counters that start a window of their own at their first increment and vanish when it ends. */
export interface Counters {
  read(keys: string[]): Promise<CounterState[]>;
  /** Adds one to each counter and answers the new counts. */
  increment(entries: { key: string; windowSeconds: number }[]): Promise<number[]>;
  reset(key: string): Promise<void>;
}

/**
 * Counters in this process only: Redis's stand-in while it is away. At most `maxEntries` are
 * kept; past that the oldest is dropped (an attacker must fail that many logins to push one out).
 */
export class MemoryCounters implements Counters {
  private readonly windows = new Map<string, { count: number; expiresAt: number }>();
  private sinceSweep = 0;

  constructor(
    private readonly maxEntries = 100_000,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.windows.size;
  }

  read(keys: string[]): Promise<CounterState[]> {
    return Promise.resolve(keys.map((key) => this.state(key)));
  }

  increment(entries: { key: string; windowSeconds: number }[]): Promise<number[]> {
    return Promise.resolve(entries.map(({ key, windowSeconds }) => this.incrementOne(key, windowSeconds)));
  }

  reset(key: string): Promise<void> {
    this.windows.delete(key);
    return Promise.resolve();
  }

  private state(key: string): CounterState {
    const window = this.live(key);
    return window
      ? { count: window.count, ttlSeconds: Math.max(1, Math.ceil((window.expiresAt - this.now()) / 1000)) }
      : { count: 0, ttlSeconds: 0 };
  }

  private incrementOne(key: string, windowSeconds: number): number {
    const window = this.live(key);
    if (window) return ++window.count;
    this.makeRoom();
    this.windows.set(key, { count: 1, expiresAt: this.now() + windowSeconds * 1000 });
    return 1;
  }

  private live(key: string) {
    const window = this.windows.get(key);
    if (window && window.expiresAt <= this.now()) {
      this.windows.delete(key);
      return undefined;
    }
    return window;
  }

  private makeRoom(): void {
    if (++this.sinceSweep >= 1000 || this.windows.size >= this.maxEntries) {
      this.sinceSweep = 0;
      const now = this.now();
      for (const [key, window] of this.windows) if (window.expiresAt <= now) this.windows.delete(key);
    }
    while (this.windows.size >= this.maxEntries) {
      const oldest = this.windows.keys().next();
      if (oldest.done) break;
      this.windows.delete(oldest.value);
    }
  }
}

/** Counters in Redis, shared by every instance (INCR, and EXPIRE NX for the window). */
export class RedisCounters implements Counters {
  constructor(private readonly redis: Redis) {}

  async read(keys: string[]): Promise<CounterState[]> {
    const pipeline = this.redis.pipeline();
    for (const key of keys) pipeline.get(key).pttl(key);
    const results = answers(await pipeline.exec());
    return keys.map((_, i) => {
      const count = Number(results[2 * i] ?? 0);
      const pttl = Number(results[2 * i + 1]);
      // -2: no such key; -1: no expiry (cannot happen here, but count it as one more second).
      return { count, ttlSeconds: count === 0 ? 0 : pttl > 0 ? Math.ceil(pttl / 1000) : 1 };
    });
  }

  async increment(entries: { key: string; windowSeconds: number }[]): Promise<number[]> {
    const multi = this.redis.multi();
    for (const { key, windowSeconds } of entries) multi.incr(key).expire(key, windowSeconds, 'NX');
    const results = answers(await multi.exec());
    return entries.map((_, i) => Number(results[2 * i]));
  }

  async reset(key: string): Promise<void> {
    await this.redis.del(key);
  }
}

/** The values of a pipeline's or transaction's replies; the first error is thrown. */
function answers(replies: [Error | null, unknown][] | null): unknown[] {
  if (!replies) throw new Error('the Redis transaction was discarded');
  return replies.map(([error, value]) => {
    if (error) throw error;
    return value;
  });
}

/**
 * Redis while it answers, this process's memory while it does not (connection not ready, or a
 * command failed): counting goes on per instance instead of stopping, and nobody is locked out
 * because a counter cannot be read. `onChange` hears when counting moves between the two.
 */
export class FallbackCounters implements Counters {
  private degraded = false;

  constructor(
    private readonly redis: Pick<Redis, 'status'>,
    private readonly primary: Counters,
    private readonly fallback: Counters,
    private readonly onChange: (degraded: boolean, error?: unknown) => void = () => undefined,
  ) {}

  read(keys: string[]): Promise<CounterState[]> {
    return this.run((counters) => counters.read(keys));
  }

  increment(entries: { key: string; windowSeconds: number }[]): Promise<number[]> {
    return this.run((counters) => counters.increment(entries));
  }

  reset(key: string): Promise<void> {
    return this.run((counters) => counters.reset(key));
  }

  private async run<T>(operation: (counters: Counters) => Promise<T>): Promise<T> {
    if (this.redis.status === 'ready') {
      try {
        const result = await operation(this.primary);
        this.mark(false);
        return result;
      } catch (error) {
        this.mark(true, error);
      }
    } else {
      this.mark(true, new Error(`Redis connection is ${this.redis.status}`));
    }
    return operation(this.fallback);
  }

  private mark(degraded: boolean, error?: unknown): void {
    if (degraded === this.degraded) return;
    this.degraded = degraded;
    this.onChange(degraded, error);
  }
}
