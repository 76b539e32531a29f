import { readFileSync } from 'node:fs';
import {
  connect,
  credsAuthenticator,
  nkeyAuthenticator,
  tokenAuthenticator,
  usernamePasswordAuthenticator,
  type Authenticator,
  type NatsConnection,
} from '@nats-io/transport-node';
import { ConfigError, natsServers } from '../config/env';
import { ParleyError, prefixed, prefixedStream } from '@parley/contracts';
import type { Logger } from '../observability/logger';

/** Why a call on the connection is refused while NATS is away (503, retryable). */
export function natsUnavailable(detail = 'the connection to NATS is down (reconnecting); try again'): ParleyError {
  return new ParleyError('UPSTREAM_UNAVAILABLE', detail, { retryable: true });
}

/** The process's NATS connection and the subject prefix of this deployment. */
export class Nats {
  /** Up from the first connect until a disconnect, and again from the reconnect. */
  private up = true;
  /** Rejects each call in flight on the connection (see `whileConnected`). */
  private readonly inFlight = new Set<(error: unknown) => void>();

  private constructor(
    readonly connection: NatsConnection,
    readonly prefix: string,
    /** Where this connection receives replies (its own requests' and chunked replies' continuations). */
    readonly inboxPrefix: string,
    /** Copies JetStream keeps of each stream this process creates (`JETSTREAM_REPLICAS`). */
    readonly streamReplicas: number,
    readonly logger?: Logger,
  ) {}

  static async connect(options: {
    url: string;
    prefix: string;
    name: string;
    logger: Logger;
    inboxPrefix?: string;
    authenticator?: Authenticator;
    /** Replicas of the streams `ensureStream` creates; 1 unless given. */
    streamReplicas?: number;
  }): Promise<Nats> {
    const inboxPrefix = options.inboxPrefix ?? '_INBOX';
    const nc = await connect({
      servers: natsServers(options.url),
      name: options.name,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
      inboxPrefix,
      // No Error (with its stack) built for every request just in case it times out: a
      // request's failure is reported with its subject by RpcClient; measurably cheaper.
      noAsyncTraces: true,
      ...(options.authenticator ? { authenticator: options.authenticator } : {}),
    });
    const nats = new Nats(nc, options.prefix, inboxPrefix, options.streamReplicas ?? 1, options.logger);
    void (async () => {
      for await (const status of nc.status()) {
        nats.observe(status.type);
        if (status.type === 'disconnect' || status.type === 'reconnect' || status.type === 'error') {
          options.logger.warn({ nats_status: status.type }, 'nats connection status changed');
        }
      }
    })();
    return nats;
  }

  /** Follows the connection's status: calls are refused while it is down, and those in flight when it drops are rejected. */
  observe(status: string): void {
    if (status === 'disconnect' || status === 'close') {
      this.up = false;
      const dropped = natsUnavailable('the connection to NATS was lost before the answer came; try again');
      for (const reject of this.inFlight) reject(dropped);
      this.inFlight.clear();
    } else if (status === 'reconnect') {
      this.up = true;
    }
  }

  /**
   * Runs a call that needs the connection (a request, a JetStream publish): refused at once
   * with 503 UPSTREAM_UNAVAILABLE while NATS is away, and rejected the same way when the
   * connection drops before it settles. nats.js would otherwise keep such a call buffered until
   * its own timeout, and drops what it buffered when it reconnects, so the caller would wait
   * out the timeout for an answer that cannot come. A call refused this way may still have
   * reached its service (its reply was lost): callers retry with the same idempotency key.
   */
  whileConnected<T>(call: () => Promise<T>): Promise<T> {
    if (!this.connected) return Promise.reject(natsUnavailable());
    return new Promise<T>((resolve, reject) => {
      // Settling twice changes nothing: whichever comes first (the answer or the drop) counts.
      this.inFlight.add(reject);
      const done = () => this.inFlight.delete(reject);
      let running: Promise<T>;
      try {
        running = call();
      } catch (error) {
        done();
        reject(error);
        return;
      }
      running.then(
        (value) => {
          done();
          resolve(value);
        },
        (error: unknown) => {
          done();
          reject(error);
        },
      );
    });
  }

  subject(name: string): string {
    return prefixed(this.prefix, name);
  }

  /** The subject without this deployment's prefix, for metric labels and dead letters. */
  unprefixed(subject: string): string {
    const head = this.subject('');
    return this.prefix && subject.startsWith(head) ? subject.slice(head.length) : subject;
  }

  stream(name: string): string {
    return prefixedStream(this.prefix, name);
  }

  /** Connected now: not closed, not disconnected and not reconnecting. */
  get connected(): boolean {
    return this.up && !this.connection.isClosed() && this.connection.info !== undefined;
  }

  async close(): Promise<void> {
    if (this.connection.isClosed()) return;
    await this.connection.drain().catch(() => this.connection.close());
  }
}

export interface NatsCredentialsConfig {
  NATS_CREDS?: string;
  NATS_USER?: string;
  NATS_PASSWORD?: string;
  NATS_TOKEN?: string;
  NATS_NKEY_SEED?: string;
}

/**
 * How a service logs in to NATS, from its environment: a creds file (`NATS_CREDS`, a path,
 * or the file's text), a user and password, a token, or an nkey seed; none for a server without
 * authorization. More than one is a configuration error.
 */
export function natsAuthenticator(config: NatsCredentialsConfig): Authenticator | undefined {
  const chosen = [
    config.NATS_CREDS && 'NATS_CREDS',
    (config.NATS_USER || config.NATS_PASSWORD) && 'NATS_USER/NATS_PASSWORD',
    config.NATS_TOKEN && 'NATS_TOKEN',
    config.NATS_NKEY_SEED && 'NATS_NKEY_SEED',
  ].filter(Boolean);
  if (chosen.length > 1) throw new ConfigError([`set one of ${chosen.join(', ')}, not several`]);
  const encoder = new TextEncoder();
  if (config.NATS_CREDS) {
    const creds = config.NATS_CREDS;
    // Read at every (re)connect, so a renewed file is picked up without a restart.
    return credsAuthenticator(() =>
      encoder.encode(creds.includes('-----BEGIN NATS USER JWT-----') ? creds : readFileSync(creds, 'utf8')),
    );
  }
  if (config.NATS_USER || config.NATS_PASSWORD) {
    if (!config.NATS_USER || !config.NATS_PASSWORD) {
      throw new ConfigError(['NATS_USER and NATS_PASSWORD go together']);
    }
    return usernamePasswordAuthenticator(config.NATS_USER, config.NATS_PASSWORD);
  }
  if (config.NATS_TOKEN) return tokenAuthenticator(config.NATS_TOKEN);
  if (config.NATS_NKEY_SEED) return nkeyAuthenticator(encoder.encode(config.NATS_NKEY_SEED));
  return undefined;
}
