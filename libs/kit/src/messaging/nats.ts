import { connect, type NatsConnection } from '@nats-io/transport-node';
import { prefixed, prefixedStream } from '@parley/contracts';
import type { Logger } from '../observability/logger';

/** The process's NATS connection and the subject prefix of this deployment. */
export class Nats {
  private constructor(
    readonly connection: NatsConnection,
    readonly prefix: string,
    /** Where this connection receives replies (its own requests' and chunked replies' continuations). */
    readonly inboxPrefix: string,
  ) {}

  static async connect(options: {
    url: string;
    prefix: string;
    name: string;
    logger: Logger;
    inboxPrefix?: string;
  }): Promise<Nats> {
    const inboxPrefix = options.inboxPrefix ?? '_INBOX';
    const nc = await connect({
      servers: options.url.split(','),
      name: options.name,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
      inboxPrefix,
    });
    void (async () => {
      for await (const status of nc.status()) {
        if (status.type === 'disconnect' || status.type === 'reconnect' || status.type === 'error') {
          options.logger.warn({ nats_status: status.type }, 'nats connection status changed');
        }
      }
    })();
    return new Nats(nc, options.prefix, inboxPrefix);
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

  get connected(): boolean {
    return !this.connection.isClosed() && this.connection.info !== undefined;
  }

  async close(): Promise<void> {
    if (this.connection.isClosed()) return;
    await this.connection.drain().catch(() => this.connection.close());
  }
}
