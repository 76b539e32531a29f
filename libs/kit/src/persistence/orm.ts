import { MikroORM, type EntitySchema, type Options } from '@mikro-orm/postgresql';
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
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/**
 * One MikroORM instance per service. Queries are unqualified and the connection's
 * `search_path` is the service's schema, so the same migrations serve any schema name
 * (test runs use their own).
 */
export async function createOrm(options: OrmOptions): Promise<MikroORM> {
  const config: Options = {
    clientUrl: options.url,
    entities: options.entities as EntitySchema[],
    extensions: [Migrator],
    driverOptions: { options: `-c search_path=${quoteIdent(options.schema)}` },
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
  return MikroORM.init(config);
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
  const client = new Client({ connectionString: options.url });
  await client.connect();
  const lockKey = `parley:migrate:${options.schema}`;
  try {
    await client.query('select pg_advisory_lock(hashtext($1))', [lockKey]);
    await client.query(`create schema if not exists ${quoteIdent(options.schema)}`);
    const applied = await orm.migrator.up();
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
