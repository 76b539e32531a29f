import { MikroORM, type EntityManager, type EntitySchema, type Options } from '@mikro-orm/postgresql';
import { Migrator } from '@mikro-orm/migrations';
import type { MigrationObject } from '@mikro-orm/core';
import { Client } from 'pg';
import type { Logger } from '../observability/logger';

export type MigrationEntry = MigrationObject;

export interface OrmOptions {
  url: string;
  schema: string;
  /** `defineEntity` results of the service. */
  entities: unknown[];
  migrations: MigrationEntry[];
  /** Source folder of the migrations, for `migration:create` during development. */
  migrationsPath?: string;
  poolMax?: number;
  /** `statement_timeout` of every pooled connection (the request path); unset: none. */
  statementTimeoutMs?: number;
  /** What `allowLongStatements` lifts it to inside background work's transactions; 0: none. */
  backgroundStatementTimeoutMs?: number;
}

/** The statement timeouts a service's configuration gives its ORM. */
export function statementTimeouts(config: {
  DATABASE_STATEMENT_TIMEOUT_MS: number;
  DATABASE_BACKGROUND_STATEMENT_TIMEOUT_MS: number;
}): Pick<OrmOptions, 'statementTimeoutMs' | 'backgroundStatementTimeoutMs'> {
  return {
    statementTimeoutMs: config.DATABASE_STATEMENT_TIMEOUT_MS,
    backgroundStatementTimeoutMs: config.DATABASE_BACKGROUND_STATEMENT_TIMEOUT_MS,
  };
}

/** The background statement timeout of each ORM, by its configuration (shared by every fork). */
const backgroundTimeouts = new WeakMap<object, number>();

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/**
 * The `application_name` of a service's connections to its schema (`parley:<schema>`, cut to
 * PostgreSQL's 63 bytes): `pg_stat_activity` shows whose a connection is, and a restore
 * refuses while a service is connected to a schema it would replace.
 */
export function applicationName(schema: string): string {
  return `parley:${schema}`.slice(0, 63);
}

/**
 * One MikroORM instance per service. Queries are unqualified and the connection's
 * `search_path` is the service's schema, so the same migrations serve any schema name
 * (test runs use their own). Every connection of the pool starts with the request path's
 * `statement_timeout` (a startup option, so no connection is ever without it); background
 * work lifts it inside its own transactions with `allowLongStatements`.
 */
export async function createOrm(options: OrmOptions): Promise<MikroORM> {
  const settings = [
    `-c search_path=${quoteIdent(options.schema)}`,
    `-c application_name=${applicationName(options.schema)}`,
  ];
  if (options.statementTimeoutMs !== undefined) {
    settings.push(`-c statement_timeout=${Math.floor(options.statementTimeoutMs)}`);
  }
  const config: Options = {
    clientUrl: options.url,
    entities: options.entities as EntitySchema[],
    extensions: [Migrator],
    driverOptions: { options: settings.join(' ') },
    pool: { min: 0, max: options.poolMax ?? 10 },
    debug: false,
    allowGlobalContext: false,
    migrations: {
      tableName: 'mikro_orm_migrations',
      schema: options.schema,
      silent: true,
      migrationsList: options.migrations,
      path: options.migrationsPath,
      pathTs: options.migrationsPath,
      emit: 'ts',
      snapshot: false,
      transactional: true,
      allOrNothing: true,
    },
  };
  const orm = await MikroORM.init(config);
  if (options.statementTimeoutMs !== undefined) {
    backgroundTimeouts.set(orm.config, Math.floor(options.backgroundStatementTimeoutMs ?? 0));
  }
  return orm;
}

/**
 * Gives the rest of `tx`'s transaction the background statement timeout instead of the
 * request path's: for work no caller waits on (migrations, consumers, rollups, re-pricing).
 * `set local` ends with the transaction, so the pooled connection goes back with its own.
 */
export async function allowLongStatements(tx: EntityManager): Promise<void> {
  if (!tx.isInTransaction()) throw new Error('allowLongStatements is called inside a transaction');
  const ms = backgroundTimeouts.get(tx.config);
  if (ms === undefined) return;
  await tx.execute(`select set_config('statement_timeout', ?, true)`, [String(ms)]);
}

/**
 * Applies pending migrations while holding a Postgres advisory lock on the schema's name,
 * so N instances starting together migrate once and the rest wait.
 */
export async function migrateUnderLock(
  orm: MikroORM,
  options: Pick<OrmOptions, 'url' | 'schema'>,
  logger: Logger,
): Promise<string[]> {
  const client = new Client({ connectionString: options.url, application_name: applicationName(options.schema) });
  await client.connect();
  const lockKey = `parley:migrate:${options.schema}`;
  try {
    await client.query('select pg_advisory_lock(hashtext($1))', [lockKey]);
    await client.query(`create schema if not exists ${quoteIdent(options.schema)}`);
    const applied = await orm.em.fork().transactional(async (tx) => {
      await allowLongStatements(tx);
      return orm.migrator.up({ transaction: tx.getTransactionContext() });
    });
    const names = applied.map((m) => m.name);
    if (names.length > 0) logger.info({ schema: options.schema, migrations: names }, 'migrations applied');
    return names;
  } finally {
    await client.query('select pg_advisory_unlock(hashtext($1))', [lockKey]).catch(() => undefined);
    await client.end().catch(() => undefined);
  }
}

export async function pendingMigrations(orm: MikroORM): Promise<number> {
  return (await orm.migrator.getPending()).length;
}

/** Drops a schema and everything in it: used by test runs to clean up after themselves. */
export async function dropSchema(url: string, schema: string): Promise<void> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`drop schema if exists ${quoteIdent(schema)} cascade`);
  } finally {
    await client.end();
  }
}

/** Runs `work` against a new, empty database next to `url`'s, dropped afterwards. */
export async function withScratchDatabase(
  url: string,
  name: string,
  work: (scratchUrl: string) => Promise<void>,
): Promise<void> {
  const admin = new Client({ connectionString: url });
  await admin.connect();
  const database = `${name}_${Date.now().toString(36)}`;
  await admin.query(`create database ${quoteIdent(database)}`);
  try {
    const scratch = new URL(url);
    scratch.pathname = `/${database}`;
    await work(scratch.toString());
  } finally {
    await admin.query(`drop database if exists ${quoteIdent(database)} with (force)`);
    await admin.end();
  }
}
