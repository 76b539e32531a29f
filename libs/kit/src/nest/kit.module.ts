import {
  Inject,
  Injectable,
  Module,
  Optional,
  type BeforeApplicationShutdown,
  type DynamicModule,
  type OnApplicationBootstrap,
  type Provider,
} from '@nestjs/common';
import { MikroORM } from '@mikro-orm/postgresql';
import { Redis } from 'ioredis';
import { serviceDatabaseUrl, serviceSchema, type CommonConfig } from '../config/env';
import { createLogger, type Logger } from '../observability/logger';
import { Metrics } from '../observability/metrics';
import { Nats, natsAuthenticator } from '../messaging/nats';
import { serviceInboxPrefix, type NatsService } from '@parley/contracts';
import { ParleyTransport, RpcClient, type TransportOptions } from '../messaging/transport';
import { DLQ_STREAM_SPEC, DOMAIN_STREAM_SPEC, ensureStream } from '../messaging/jetstream';
import { OutboxEntry, OutboxRelay } from '../messaging/outbox';
import { CursorCodec, CursorKeyEntry, CursorKeyring } from '../persistence/cursors';
import { Keyset } from '../persistence/keyset';
import { createOrm, migrateUnderLock, statementTimeouts, type MigrationEntry } from '../persistence/orm';
import { GuardedRedis } from '../persistence/redis';
import { HealthController } from './health.controller';
import { Readiness } from './readiness';
import { KIT_OPTIONS, LOGGER, REDIS } from './tokens';

export interface KitOptions {
  service: string;
  config: CommonConfig;
  database?: {
    entities: unknown[];
    migrations: MigrationEntry[];
    migrationsPath?: string;
    /** The service writes domain events through a transactional outbox. */
    outbox?: boolean;
  };
  redis?: boolean;
  /** Run-time tuning of the service's batch consumers, by durable name. */
  consumers?: TransportOptions['consumers'];
}

/** Provisions the streams every service shares and closes what the kit opened, in order. */
@Injectable()
class KitLifecycle implements OnApplicationBootstrap, BeforeApplicationShutdown {
  constructor(
    @Inject(ParleyTransport) private readonly transport: ParleyTransport,
    @Inject(Nats) private readonly nats: Nats,
    @Optional() @Inject(MikroORM) private readonly orm?: MikroORM,
    @Optional() @Inject(OutboxRelay) private readonly relay?: OutboxRelay,
    @Optional() @Inject(REDIS) private readonly redis?: Redis,
    @Optional() @Inject(CursorKeyring) private readonly cursorKeys?: CursorKeyring,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    await ensureStream(this.nats, DLQ_STREAM_SPEC);
    if (this.relay) {
      await ensureStream(this.nats, DOMAIN_STREAM_SPEC);
      this.relay.start();
    }
  }

  async beforeApplicationShutdown(): Promise<void> {
    await this.transport.close();
    await this.relay?.stop();
    this.cursorKeys?.stop();
    await this.nats.close();
    await this.orm?.close();
    this.redis?.disconnect();
  }
}

@Module({})
export class KitModule {
  static forRoot(options: KitOptions): DynamicModule {
    const providers: Provider[] = [
      { provide: KIT_OPTIONS, useValue: options },
      { provide: LOGGER, useValue: createLogger(options.service, options.config.LOG_LEVEL) },
      { provide: Metrics, useValue: new Metrics(options.service) },
      {
        provide: Nats,
        inject: [LOGGER],
        useFactory: (logger: Logger) =>
          Nats.connect({
            url: options.config.NATS_URL,
            prefix: options.config.NATS_SUBJECT_PREFIX,
            name: `parley-${options.service}`,
            logger,
            inboxPrefix: serviceInboxPrefix(options.service as NatsService),
            authenticator: natsAuthenticator(options.config),
          }),
      },
      {
        provide: RpcClient,
        inject: [Nats, Metrics],
        useFactory: (nats: Nats, metrics: Metrics) =>
          new RpcClient(nats, options.config.NATS_REQUEST_TIMEOUT_MS, metrics),
      },
      {
        provide: ParleyTransport,
        inject: [Nats, LOGGER, Metrics],
        useFactory: (nats: Nats, logger: Logger, metrics: Metrics) =>
          new ParleyTransport(nats, { queue: options.service, consumers: options.consumers }, logger, metrics),
      },
      {
        provide: Readiness,
        inject: [Nats, { token: REDIS, optional: true }, { token: MikroORM, optional: true }],
        useFactory: (nats: Nats, redis?: Redis, orm?: MikroORM) => new Readiness(nats, redis, orm),
      },
      KitLifecycle,
    ];
    const exported: NonNullable<DynamicModule['exports']> = [
      LOGGER,
      Metrics,
      Nats,
      RpcClient,
      ParleyTransport,
      Readiness,
      KIT_OPTIONS,
    ];

    if (options.redis !== false) {
      providers.push({
        provide: REDIS,
        inject: [LOGGER],
        useFactory: (logger: Logger) =>
          new GuardedRedis(options.config.REDIS_URL, {
            commandTimeoutMs: options.config.REDIS_COMMAND_TIMEOUT_MS,
            logger,
          }),
      });
      exported.push(REDIS);
    }

    const database = options.database;
    if (database) {
      const url = serviceDatabaseUrl(options.service, options.config);
      const schema = serviceSchema(options.service, options.config);
      providers.push({
        provide: MikroORM,
        inject: [LOGGER],
        useFactory: async (logger: Logger) => {
          const orm = await createOrm({
            url,
            schema,
            entities: [...database.entities, CursorKeyEntry, ...(database.outbox ? [OutboxEntry] : [])],
            migrations: database.migrations,
            migrationsPath: database.migrationsPath,
            ...statementTimeouts(options.config),
          });
          if (options.config.MIGRATE_ON_START) await migrateUnderLock(orm, { url, schema }, logger);
          return orm;
        },
      });
      exported.push(MikroORM);
      providers.push(
        {
          provide: CursorKeyring,
          inject: [MikroORM, LOGGER],
          useFactory: async (orm: MikroORM, logger: Logger) => {
            const keyring = new CursorKeyring(orm, options.config.CURSOR_SECRET, logger);
            await keyring.start();
            return keyring;
          },
        },
        {
          provide: Keyset,
          inject: [CursorKeyring],
          useFactory: (ring: CursorKeyring) => new Keyset(new CursorCodec(ring)),
        },
      );
      exported.push(CursorKeyring, Keyset);
      if (database.outbox) {
        providers.push({
          provide: OutboxRelay,
          inject: [MikroORM, Nats, LOGGER, Metrics],
          useFactory: (orm: MikroORM, nats: Nats, logger: Logger, metrics: Metrics) => {
            const relay = new OutboxRelay(orm, nats, logger, metrics);
            metrics.outboxBacklogSource = () => relay.backlog();
            return relay;
          },
        });
        exported.push(OutboxRelay);
      }
    }

    return {
      module: KitModule,
      global: true,
      controllers: [HealthController],
      providers,
      exports: exported,
    };
  }
}
