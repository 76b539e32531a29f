import type { NatsConnection, Status } from '@nats-io/transport-node';

/**
 * The connection dropped while a request waited for its answer. The client discards what it had
 * queued and will not receive the answer, so the request is sent again once it is back (a report
 * under the same Nats-Msg-Id, so it is stored once).
 */
export class ConnectionInterruptedError extends Error {
  constructor() {
    super('the NATS connection was interrupted before the answer came');
    this.name = 'ConnectionInterruptedError';
  }
}

/**
 * Follows a connection's status: whether it is up, and which requests a disconnect cut off. The NATS
 * client drops what was written while it reconnects, so a request sent then would only time out.
 */
export class ConnectionWatch {
  private down: { promise: Promise<void>; resolve: () => void } | undefined;
  private interruption!: Promise<never>;
  private interrupt!: (error: Error) => void;
  private readonly statuses: AsyncIterable<Status>;

  constructor(nc: NatsConnection, onServerError: (error: Error) => void) {
    this.arm();
    const statuses = nc.status();
    this.statuses = statuses;
    void (async () => {
      for await (const status of statuses) this.observe(status, onServerError);
    })().catch(() => undefined);
    void nc.closed().then(() => this.up());
  }

  /** Resolves once the connection is up (at once if it is), or closed. */
  whenUp(): Promise<void> {
    return this.down?.promise ?? Promise.resolve();
  }

  get isUp(): boolean {
    return this.down === undefined;
  }

  /** `work`, or ConnectionInterruptedError if the connection drops before it settles. */
  guard<T>(work: Promise<T>): Promise<T> {
    // The loser of the race settles later, unobserved.
    work.catch(() => undefined);
    return Promise.race([work, this.interruption]);
  }

  stop(): void {
    (this.statuses as { stop?: () => void }).stop?.();
    this.up();
  }

  private observe(status: Status, onServerError: (error: Error) => void): void {
    switch (status.type) {
      case 'disconnect':
        if (!this.down) {
          let resolve!: () => void;
          const promise = new Promise<void>((r) => (resolve = r));
          this.down = { promise, resolve };
        }
        this.interrupt(new ConnectionInterruptedError());
        this.arm();
        break;
      case 'reconnect':
        this.up();
        break;
      case 'error':
        onServerError(status.error);
        break;
      case 'close':
      case 'forceReconnect':
      case 'ldm':
      case 'ping':
      case 'reconnecting':
      case 'slowConsumer':
      case 'staleConnection':
      case 'update':
        break;
    }
  }

  private up(): void {
    this.down?.resolve();
    this.down = undefined;
  }

  private arm(): void {
    this.interruption = new Promise<never>((_, reject) => (this.interrupt = reject));
    this.interruption.catch(() => undefined);
  }
}
