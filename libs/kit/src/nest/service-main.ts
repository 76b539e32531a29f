import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import type { CommonConfig } from '../config/env';
import { runMain, startHttpService, type FrameworkErrorHandler } from './bootstrap';
import type { KitDatabase } from './kit.module';

export interface ServiceDefinition<C extends CommonConfig> {
  service: string;
  loadConfig(): C;
  httpPort(config: C): number;
  /** The root module for this configuration. */
  module(config: C): unknown;
  /** `kitDatabase(…)` from `@parley/kit/database`, for `main.js migrate` and `migration:create`. */
  database?: KitDatabase;
  /** Proxies (addresses, CIDRs) whose X-Forwarded-For is believed; none by default. */
  trustProxy?(config: C): string[];
  /** Answers Fastify's own refusals before routing (undecodable URL, over-long path parameter). */
  frameworkErrors?: FrameworkErrorHandler;
  /** See startHttpService: how far V8 lets the heap grow past what a full collection kept. */
  heapGrowthPercent?: number;
  configure?(app: NestFastifyApplication, config: C): void | Promise<void>;
}

/**
 * A service's entry point. `main.js` starts it; `main.js migrate` applies migrations and
 * exits; `main.js migration:create` writes a new migration from the entities' diff
 * against the database (development). `main.js backup <file>` and `main.js restore <file>
 * [--schema <service>]` back up and restore every service's schema (docs/operations.md); any
 * service's image runs them, with its NATS credentials.
 */
export function serviceMain<C extends CommonConfig>(definition: ServiceDefinition<C>): void {
  runMain(async () => {
    const config = definition.loadConfig();
    const command = process.argv[2] ?? 'start';
    if (command === 'migrate' || command === 'migration:create') {
      if (!definition.database) throw new Error(`${definition.service} has no database`);
      await definition.database.command(command, definition.service, config);
      return;
    }
    if (command === 'backup' || command === 'restore') {
      // Loaded only here: the gateway's process never loads what the commands need.
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const { runOperation } = require('../ops/backup') as typeof import('../ops/backup');
      await runOperation(command, process.argv.slice(3), definition.service, config);
      return;
    }
    if (command !== 'start') {
      throw new Error(`unknown command "${command}" (start, migrate, migration:create, backup, restore)`);
    }
    await startHttpService(definition.module(config), {
      host: config.HTTP_HOST,
      port: definition.httpPort(config),
      trustProxy: definition.trustProxy?.(config),
      frameworkErrors: definition.frameworkErrors,
      heapGrowthPercent: definition.heapGrowthPercent,
      configure: (app) => definition.configure?.(app, config),
    });
  });
}
