import { Redis, type Command } from 'ioredis';
import type { Logger } from '../observability/logger';

/** How long Redis is left alone once a command went unanswered. */
const QUIET_MS = 5000;
const TIMED_OUT = 'Command timed out';

export interface RedisClientOptions {
  /** A command unanswered this long fails (ioredis `commandTimeout`). */
  commandTimeoutMs: number;
  /** How long every command fails at once after one timed out; default 5 s. */
  quietMs?: number;
  logger?: Logger;
}

/**
 * ioredis with a short command timeout and a circuit. A Redis that stops answering (a hung
 * process, a network that drops packets) fails each command after `commandTimeoutMs`; after one
 * such timeout every command fails at once for `quietMs`, then commands are tried again. So a
 * request pays the timeout at most once per interval, not once per command. Callers treat a
 * failed command as Redis being away: caches are bypassed and limits are counted in memory.
 */
export class GuardedRedis extends Redis {
  private quietUntil = 0;
  private readonly quietMs: number;
  private readonly log?: Logger;

  constructor(url: string, options: RedisClientOptions) {
    super(url, {
      maxRetriesPerRequest: 1,
      connectTimeout: 2000,
      commandTimeout: options.commandTimeoutMs,
      lazyConnect: false,
      // Commands issued in the same tick (concurrent requests' rate limits and cache reads)
      // go out in one socket write.
      enableAutoPipelining: true,
    });
    this.quietMs = options.quietMs ?? QUIET_MS;
    this.log = options.logger;
  }

  /** Whether commands currently fail at once because Redis stopped answering. */
  get unresponsive(): boolean {
    return this.quietUntil > Date.now();
  }

  override sendCommand(command: Command, stream?: Parameters<Redis['sendCommand']>[1]): unknown {
    if (this.unresponsive) {
      command.reject(new Error(`Redis is not answering (a command timed out); retrying after ${this.quietMs} ms`));
      return command.promise;
    }
    const sent = super.sendCommand(command, stream);
    command.promise.then(
      () => {
        this.quietUntil = 0;
      },
      (error: unknown) => {
        if (error instanceof Error && error.message === TIMED_OUT && !this.unresponsive) {
          this.quietUntil = Date.now() + this.quietMs;
          this.log?.warn({ quiet_ms: this.quietMs }, 'Redis is not answering; going on without it');
        }
      },
    );
    return sent;
  }
}
