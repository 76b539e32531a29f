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
import { DiscoveryModule, DiscoveryService, MetadataScanner, Reflector } from '@nestjs/core';
import { MikroORM } from '@mikro-orm/postgresql';
import { Redis } from 'ioredis';
import type { RpcContract } from '@parley/contracts';
import { serviceDatabaseUrl, serviceSchema, type CommonConfig } from '../config/env';
import { createLogger, type Logger } from '../observability/logger';
import { Metrics } from '../observability/metrics';
import { Nats } from '../messaging/nats';
import { RPC_HANDLER, RpcClient, RpcServer, type RpcHandlerFn } from '../messaging/rpc';
import { DLQ_STREAM_SPEC, DOMAIN_STREAM_SPEC, ensureStream } from '../messaging/jetstream';
import { OutboxEntry, OutboxRelay } from '../messaging/outbox';
import { createOrm, migrateUnderLock, type MigrationEntry } from '../persistence/orm';
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
}

/** Serves every `@RpcHandler` method found on the application's providers; closes what the kit opened. */
@Injectable()
class KitLifecycle implements OnApplicationBootstrap, BeforeApplicationShutdown {
  constructor(
    @Inject(KIT_OPTIONS) private readonly options: KitOptions,
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
    private readonly reflector: Reflector,
    @Inject(RpcServer) private readonly server: RpcServer,
    @Inject(Nats) private readonly nats: Nats,
    @Inject(LOGGER) private readonly logger: Logger,
    @Optional() @Inject(MikroORM) private readonly orm?: MikroORM,
    @Optional() @Inject(OutboxRelay) private readonly relay?: OutboxRelay,
    @Optional() @Inject(REDIS) private readonly redis?: Redis,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    await ensureStream(this.nats, DLQ_STREAM_SPEC);
    if (this.relay) {
      await ensureStream(this.nats, DOMAIN_STREAM_SPEC);
      this.relay.start();
    }
    const subjects: string[] = [];
    for (const wrapper of this.discovery.getProviders()) {
      const instance: unknown = wrapper.instance;
      if (!instance || typeof instance !== 'object') continue;
      const prototype = Object.getPrototypeOf(instance) as object;
      for (const name of this.scanner.getAllMethodNames(prototype)) {
        const method = (instance as Record<string, unknown>)[name];
        if (typeof method !== 'function') continue;
        const contract = this.reflector.get<RpcContract | undefined>(RPC_HANDLER, method);
        if (!contract) continue;
        this.server.serve(contract, (method as RpcHandlerFn<RpcContract>).bind(instance));
        subjects.push(contract.subject);
      }
    }
    await this.nats.connection.flush();
    this.logger.info({ subjects, queue: this.options.service }, 'serving requests');
  }

  async beforeApplicationShutdown(): Promise<void> {
    await this.server.close();
    await this.relay?.stop();
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
          }),
      },
      {
        provide: RpcClient,
        inject: [Nats, Metrics],
        useFactory: (nats: Nats, metrics: Metrics) =>
          new RpcClient(nats, options.config.NATS_REQUEST_TIMEOUT_MS, metrics),
      },
      {
        provide: RpcServer,
        inject: [Nats, LOGGER, Metrics],
        useFactory: (nats: Nats, logger: Logger, metrics: Metrics) =>
          new RpcServer(nats, options.service, logger, metrics),
      },
      {
        provide: Readiness,
        inject: [Nats, { token: REDIS, optional: true }, { token: MikroORM, optional: true }],
        useFactory: (nats: Nats, redis?: Redis, orm?: MikroORM) => new Readiness(nats, redis, orm),
      },
      KitLifecycle,
    ];
    const exported: NonNullable<DynamicModule['exports']> = [LOGGER, Metrics, Nats, RpcClient, Readiness, KIT_OPTIONS];

    if (options.redis !== false) {
      providers.push({
        provide: REDIS,
        useFactory: () =>
          new Redis(options.config.REDIS_URL, {
            maxRetriesPerRequest: 1,
            connectTimeout: 2000,
            lazyConnect: false,
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
            entities: database.outbox ? [...database.entities, OutboxEntry] : database.entities,
            migrations: database.migrations,
            migrationsPath: database.migrationsPath,
          });
          if (options.config.MIGRATE_ON_START) await migrateUnderLock(orm, { url, schema }, logger);
          return orm;
        },
      });
      exported.push(MikroORM);
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
      imports: [DiscoveryModule],
      controllers: [HealthController],
      providers,
      exports: exported,
    };
  }
}
