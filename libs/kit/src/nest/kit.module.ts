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
import { Redis } from 'ioredis';
import type { CommonConfig } from '../config/env';
import { createLogger, type Logger } from '../observability/logger';
import { Metrics } from '../observability/metrics';
import { Nats, natsAuthenticator } from '../messaging/nats';
import { serviceInboxPrefix, type NatsService } from '@parley/contracts';
import { ParleyTransport, RpcClient, type TransportOptions } from '../messaging/transport';
import { DLQ_STREAM_SPEC, DOMAIN_STREAM_SPEC, ensureStream } from '../messaging/jetstream';
import { GuardedRedis } from '../persistence/redis';
import { HealthController } from './health.controller';
import { Readiness } from './readiness';
import { DATABASE, KIT_OPTIONS, LOGGER, REDIS, type DatabaseHandle } from './tokens';

/**
 * A service's database, made by `kitDatabase` from `@parley/kit/database`. That entry point
 * holds everything that loads MikroORM; this module only calls it, so a service without a
 * database does not load it.
 */
export interface KitDatabase {
  /** The database's providers (MikroORM, cursor keyring, keyset, outbox relay, `DATABASE`) and exports. */
  module(options: KitOptions): { providers: Provider[]; exports: NonNullable<DynamicModule['exports']> };
  /** `main.js migrate` (apply pending migrations) and `main.js migration:create` (development). */
  command(command: 'migrate' | 'migration:create', service: string, config: CommonConfig): Promise<void>;
}

export interface KitOptions {
  service: string;
  config: CommonConfig;
  database?: KitDatabase;
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
    @Optional() @Inject(DATABASE) private readonly database?: DatabaseHandle,
    @Optional() @Inject(REDIS) private readonly redis?: Redis,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    await ensureStream(this.nats, DLQ_STREAM_SPEC);
    if (this.database?.outbox) {
      await ensureStream(this.nats, DOMAIN_STREAM_SPEC);
      this.database.startOutbox();
    }
  }

  async beforeApplicationShutdown(): Promise<void> {
    await this.transport.close();
    await this.database?.stop();
    await this.nats.close();
    await this.database?.close();
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
            streamReplicas: options.config.JETSTREAM_REPLICAS,
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
        inject: [Nats, { token: REDIS, optional: true }, { token: DATABASE, optional: true }],
        useFactory: (nats: Nats, redis?: Redis, database?: DatabaseHandle) => new Readiness(nats, redis, database),
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

    if (options.database) {
      const database = options.database.module(options);
      providers.push(...database.providers);
      exported.push(...database.exports);
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
