import { resolve } from 'node:path';
import type { DynamicModule, Provider } from '@nestjs/common';
import { MikroORM } from '@mikro-orm/postgresql';
import { serviceDatabaseUrl, serviceSchema } from '../config/env';
import { createLogger, type Logger } from '../observability/logger';
import { Metrics } from '../observability/metrics';
import { Nats } from '../messaging/nats';
import { OutboxEntry, OutboxRelay } from '../messaging/outbox';
import { CursorCodec, CursorKeyEntry, CursorKeyring } from '../persistence/cursors';
import { Keyset } from '../persistence/keyset';
import {
  createOrm,
  migrateUnderLock,
  pendingMigrations,
  statementTimeouts,
  withScratchDatabase,
  type MigrationEntry,
} from '../persistence/orm';
import type { KitDatabase } from './kit.module';
import { DATABASE, LOGGER, type DatabaseHandle } from './tokens';

export interface DatabaseDefinition {
  entities: unknown[];
  migrations: MigrationEntry[];
  /** Source folder of the migrations, for `migration:create` during development. */
  migrationsPath?: string;
  /** The service writes domain events through a transactional outbox. */
  outbox?: boolean;
}

/**
 * A service's PostgreSQL database for `KitModule.forRoot({ database })` and `serviceMain`:
 * MikroORM (migrated on start unless `MIGRATE_ON_START` is off), the cursor keyring and
 * `Keyset`, and the outbox relay where `outbox` is set.
 */
export function kitDatabase(definition: DatabaseDefinition): KitDatabase {
  const entities = [...definition.entities, CursorKeyEntry, ...(definition.outbox ? [OutboxEntry] : [])];
  return {
    module({ service, config }) {
      const url = serviceDatabaseUrl(service, config);
      const schema = serviceSchema(service, config);
      const providers: Provider[] = [
        {
          provide: MikroORM,
          inject: [LOGGER],
          useFactory: async (logger: Logger) => {
            const orm = await createOrm({
              url,
              schema,
              entities,
              migrations: definition.migrations,
              migrationsPath: definition.migrationsPath,
              ...statementTimeouts(config),
            });
            if (config.MIGRATE_ON_START) await migrateUnderLock(orm, { url, schema }, logger);
            return orm;
          },
        },
        {
          provide: CursorKeyring,
          inject: [MikroORM, LOGGER],
          useFactory: async (orm: MikroORM, logger: Logger) => {
            const keyring = new CursorKeyring(orm, config.CURSOR_SECRET, logger);
            await keyring.start();
            return keyring;
          },
        },
        {
          provide: Keyset,
          inject: [CursorKeyring],
          useFactory: (ring: CursorKeyring) => new Keyset(new CursorCodec(ring)),
        },
      ];
      const exports: NonNullable<DynamicModule['exports']> = [MikroORM, CursorKeyring, Keyset];
      if (definition.outbox) {
        providers.push({
          provide: OutboxRelay,
          inject: [MikroORM, Nats, LOGGER, Metrics],
          useFactory: (orm: MikroORM, nats: Nats, logger: Logger, metrics: Metrics) => {
            const relay = new OutboxRelay(orm, nats, logger, metrics);
            metrics.outboxBacklogSource = () => relay.backlog();
            return relay;
          },
        });
        exports.push(OutboxRelay);
      }
      providers.push({
        provide: DATABASE,
        inject: [MikroORM, CursorKeyring, { token: OutboxRelay, optional: true }],
        useFactory: (orm: MikroORM, keyring: CursorKeyring, relay?: OutboxRelay): DatabaseHandle => ({
          outbox: relay !== undefined,
          startOutbox: () => relay?.start(),
          stop: async () => {
            await relay?.stop();
            keyring.stop();
          },
          close: () => orm.close(),
          ping: async () => {
            await orm.em.fork().execute('select 1');
          },
          pendingMigrations: () => pendingMigrations(orm),
        }),
      });
      return { providers, exports: [...exports, DATABASE] };
    },

    async command(command, service, config) {
      const logger = createLogger(service, config.LOG_LEVEL);
      const url = serviceDatabaseUrl(service, config);
      const migrationsPath = definition.migrationsPath ? resolve(definition.migrationsPath) : undefined;
      if (command === 'migrate') {
        const schema = serviceSchema(service, config);
        const orm = await createOrm({
          url,
          schema,
          entities,
          migrations: definition.migrations,
          migrationsPath,
          ...statementTimeouts(config),
        });
        await migrateUnderLock(orm, { url, schema }, logger).finally(() => orm.close());
        return;
      }
      // The diff is taken in a scratch database holding only this service's tables, in the
      // default schema, so the migration comes out unqualified and sees no other service.
      await withScratchDatabase(url, `parley_migrations_${service}`, async (scratchUrl) => {
        const orm = await createOrm({
          url: scratchUrl,
          schema: 'public',
          entities,
          migrations: definition.migrations,
          migrationsPath,
        });
        try {
          await migrateUnderLock(orm, { url: scratchUrl, schema: 'public' }, logger);
          const created = await orm.migrator.create(undefined, false, definition.migrations.length === 0);
          logger.info({ file: created.fileName, changed: created.diff.up.length > 0 }, 'migration written');
        } finally {
          await orm.close();
        }
      });
    },
  };
}
