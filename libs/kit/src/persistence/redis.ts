import { Redis, type Command } from 'ioredis';
import type { Logger } from '../observability/logger';

/** How long Redis is left alone once a command went unanswered. */
const QUIET_MS = 5000;
const TIMED_OUT = 'Command timed out';
/** The longest wait between two reconnection attempts. */
const MAX_RECONNECT_DELAY_MS = 1000;

export interface RedisClientOptions {
  /** A command unanswered this long fails (ioredis `commandTimeout`). */
  commandTimeoutMs: number;
  /** How long every command fails at once after one timed out; default 5 s. */
  quietMs?: number;
  logger?: Logger;
}

/**
 * ioredis that never makes a request wait for a Redis that is away. Once the first connection
 * attempt is over, a command sent while there is no connection fails at once (no offline
 * queue), and reconnection goes on in the background, at most a second apart. A Redis that
 * stops answering with its connection open (a hung process, a network that drops packets)
 * fails each command after `commandTimeoutMs`; after one such timeout every command fails at
 * once for `quietMs`, then commands are tried again. Callers treat a failed command as Redis
 * being away: caches are bypassed and limits are counted in memory.
 *
 * Connection errors are logged here, structured, once when Redis goes away and once when it is
 * back (ioredis would print each failed attempt to stderr, with no listener for them).
 */
export class GuardedRedis extends Redis {
  private quietUntil = 0;
  private readonly quietMs: number;
  private readonly log?: Logger;
  /** Redis is taken as away (logged once until it is back). */
  private away = false;

  constructor(url: string, options: RedisClientOptions) {
    super(url, {
      maxRetriesPerRequest: 1,
      connectTimeout: 2000,
      commandTimeout: options.commandTimeoutMs,
      lazyConnect: false,
      retryStrategy: (attempt) => Math.min(attempt * 100, MAX_RECONNECT_DELAY_MS),
      // Commands issued in the same tick (concurrent requests' rate limits and cache reads)
      // go out in one socket write.
      enableAutoPipelining: true,
    });
    this.quietMs = options.quietMs ?? QUIET_MS;
    this.log = options.logger;
    // Commands sent while the first connection is made wait for it; after that, none waits.
    const noQueue = () => {
      this.options.enableOfflineQueue = false;
    };
    this.once('ready', noQueue);
    this.once('reconnecting', noQueue);
    this.on('ready', () => {
      this.quietUntil = 0;
      this.back();
    });
    this.on('error', (error: unknown) => this.gone(error, 'Redis is away; going on without it'));
  }

  /** Whether commands currently fail at once because Redis stopped answering. */
  get unresponsive(): boolean {
    return this.quietUntil > Date.now();
  }

  override sendCommand(command: Command, stream?: Parameters<Redis['sendCommand']>[1]): unknown {
    // No connection (and the first attempt is over): no waiting for one.
    if (this.options.enableOfflineQueue === false && this.status !== 'ready' && this.status !== 'connect') {
      command.reject(new Error(`Redis is away (connection ${this.status})`));
      return command.promise;
    }
    // Only a connection that is up can be unresponsive: the handshake of a new one goes through.
    if (this.status === 'ready' && this.unresponsive) {
      command.reject(new Error(`Redis is not answering (a command timed out); retrying after ${this.quietMs} ms`));
      return command.promise;
    }
    const sent = super.sendCommand(command, stream);
    command.promise.then(
      () => {
        this.quietUntil = 0;
        if (this.away) this.back();
      },
      (error: unknown) => {
        if (error instanceof Error && error.message === TIMED_OUT && !this.unresponsive) {
          this.quietUntil = Date.now() + this.quietMs;
          this.gone(error, 'Redis is not answering; going on without it', { quiet_ms: this.quietMs });
        }
      },
    );
    return sent;
  }

  private back(): void {
    if (!this.away) return;
    this.away = false;
    this.log?.info('Redis answers again');
  }

  private gone(error: unknown, message: string, extra: Record<string, unknown> = {}): void {
    if (this.away) return;
    this.away = true;
    this.log?.warn({ ...extra, err: error instanceof Error ? error.message : String(error) }, message);
  }
}
