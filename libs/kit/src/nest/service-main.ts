import { resolve } from 'node:path';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { serviceDatabaseUrl, serviceSchema, type CommonConfig } from '../config/env';
import { createLogger } from '../observability/logger';
import { OutboxEntry } from '../messaging/outbox';
import { CursorKeyEntry } from '../persistence/cursors';
import { createOrm, migrateUnderLock, statementTimeouts, withScratchDatabase } from '../persistence/orm';
import { runMain, startHttpService, type FrameworkErrorHandler } from './bootstrap';
import type { KitOptions } from './kit.module';

export interface ServiceDefinition<C extends CommonConfig> {
  service: string;
  loadConfig(): C;
  httpPort(config: C): number;
  /** The root module for this configuration. */
  module(config: C): unknown;
  database?: KitOptions['database'];
  /** Proxies (addresses, CIDRs) whose X-Forwarded-For is believed; none by default. */
  trustProxy?(config: C): string[];
  /** Answers Fastify's own refusals before routing (undecodable URL, over-long path parameter). */
  frameworkErrors?: FrameworkErrorHandler;
  configure?(app: NestFastifyApplication, config: C): void | Promise<void>;
}

/**
 * A service's entry point. `main.js` starts it; `main.js migrate` applies migrations and
 * exits; `main.js migration:create` writes a new migration from the entities' diff
 * against the database (development).
 */
export function serviceMain<C extends CommonConfig>(definition: ServiceDefinition<C>): void {
  runMain(async () => {
    const config = definition.loadConfig();
    const command = process.argv[2] ?? 'start';
    if (command === 'migrate' || command === 'migration:create') {
      const database = definition.database;
      if (!database) throw new Error(`${definition.service} has no database`);
      const logger = createLogger(definition.service, config.LOG_LEVEL);
      const url = serviceDatabaseUrl(definition.service, config);
      const entities = [...database.entities, CursorKeyEntry, ...(database.outbox ? [OutboxEntry] : [])];
      const migrationsPath = database.migrationsPath ? resolve(database.migrationsPath) : undefined;
      if (command === 'migrate') {
        const schema = serviceSchema(definition.service, config);
        const orm = await createOrm({
          url,
          schema,
          entities,
          migrations: database.migrations,
          migrationsPath,
          ...statementTimeouts(config),
        });
        await migrateUnderLock(orm, { url, schema }, logger).finally(() => orm.close());
        return;
      }
      // The diff is taken in a scratch database holding only this service's tables, in the
      // default schema, so the migration comes out unqualified and sees no other service.
      await withScratchDatabase(url, `parley_migrations_${definition.service}`, async (scratchUrl) => {
        const orm = await createOrm({
          url: scratchUrl,
          schema: 'public',
          entities,
          migrations: database.migrations,
          migrationsPath,
        });
        try {
          await migrateUnderLock(orm, { url: scratchUrl, schema: 'public' }, logger);
          const created = await orm.migrator.create(undefined, false, database.migrations.length === 0);
          logger.info({ file: created.fileName, changed: created.diff.up.length > 0 }, 'migration written');
        } finally {
          await orm.close();
        }
      });
      return;
    }
    if (command !== 'start') throw new Error(`unknown command "${command}" (start, migrate, migration:create)`);
    await startHttpService(definition.module(config), {
      host: config.HTTP_HOST,
      port: definition.httpPort(config),
      trustProxy: definition.trustProxy?.(config),
      frameworkErrors: definition.frameworkErrors,
      configure: (app) => definition.configure?.(app, config),
    });
  });
}
