export const LOGGER = Symbol('parley:logger');
export const KIT_OPTIONS = Symbol('parley:kit-options');
export const REDIS = Symbol('parley:redis');
/** A service's database as the kit's lifecycle and readiness see it (see `DatabaseHandle`). */
export const DATABASE = Symbol('parley:database');

/**
 * What the kit module needs of a service's database, provided under `DATABASE` by
 * `kitDatabase` (`@parley/kit/database`): the kit itself does not load MikroORM, so a service
 * without a database (the gateway) never does.
 */
export interface DatabaseHandle {
  /** The service writes domain events through a transactional outbox. */
  readonly outbox: boolean;
  /** Starts the outbox relay (after the domain stream is provisioned). */
  startOutbox(): void;
  /** Before NATS closes: the outbox relay's last publishes, the cursor keyring's refresh. */
  stop(): Promise<void>;
  /** After NATS closes: the connection pool. */
  close(): Promise<void>;
  /** One round trip to PostgreSQL. */
  ping(): Promise<void>;
  pendingMigrations(): Promise<number>;
}
