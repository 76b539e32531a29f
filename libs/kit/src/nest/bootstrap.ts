import 'reflect-metadata';
import { flushCompileCache } from 'node:module';
import { setFlagsFromString } from 'node:v8';
import type { INestApplication, LoggerService } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import type { FastifyServerOptions } from 'fastify';
import { ConfigError } from '../config/env';
import type { Logger } from '../observability/logger';
import { Metrics } from '../observability/metrics';
import { ParleyTransport } from '../messaging/transport';
import { LOGGER } from './tokens';

export const BODY_LIMIT_BYTES = 1024 * 1024;

/**
 * Answers what Fastify refuses before routing (a URL it cannot decode, a path parameter over
 * its length limit), which no error handler or filter sees.
 */
export type FrameworkErrorHandler = NonNullable<FastifyServerOptions['frameworkErrors']>;

/** Start-up chatter (every module and route) that belongs at debug level. */
const QUIET_CONTEXTS = new Set(['InstanceLoader', 'RoutesResolver', 'RouterExplorer', 'NestFactory']);

/** Nest's own messages go through the same pino logger as everything else. */
export class PinoNestLogger implements LoggerService {
  constructor(private readonly logger: Logger) {}
  log(message: unknown, context?: string) {
    if (context && QUIET_CONTEXTS.has(context)) this.logger.debug({ context }, String(message));
    else this.logger.info({ context }, String(message));
  }
  error(message: unknown, trace?: string, context?: string) {
    this.logger.error({ context, stack: trace }, String(message));
  }
  warn(message: unknown, context?: string) {
    this.logger.warn({ context }, String(message));
  }
  debug(message: unknown, context?: string) {
    this.logger.debug({ context }, String(message));
  }
  verbose(message: unknown, context?: string) {
    this.logger.trace({ context }, String(message));
  }
}

/**
 * The Nest application on Fastify with Parley's NATS transport connected as its microservice:
 * handlers declared with @RpcHandler, @DomainEventHandler and @StreamBatchHandler are served
 * once it is started. Tests use it without listening on HTTP.
 */
export async function createServiceApp(
  module: unknown,
  options: { logger?: false; trustProxy?: string[]; frameworkErrors?: FrameworkErrorHandler } = {},
): Promise<NestFastifyApplication> {
  // `request.ip` is the socket's address unless the connection comes from a trusted proxy; then
  // the right-most X-Forwarded-For entry that is not a trusted proxy (see ServiceDefinition.trustProxy).
  const trustProxy = options.trustProxy?.length ? options.trustProxy : false;
  const adapter = new FastifyAdapter({
    bodyLimit: BODY_LIMIT_BYTES,
    trustProxy,
    ...(options.frameworkErrors ? { frameworkErrors: options.frameworkErrors } : {}),
  });
  const app = await NestFactory.create<NestFastifyApplication>(module as never, adapter, {
    bufferLogs: options.logger !== false,
    abortOnError: false,
    ...(options.logger === false ? { logger: false } : {}),
  });
  // Each handler's decorator carries the filter that hands its errors to the transport.
  app.connectMicroservice({ strategy: app.get(ParleyTransport) }, { inheritAppConfig: false });
  return app;
}

/** Initialises the application (streams provisioned, hooks run), then serves its NATS handlers. */
export async function startServing(app: INestApplication): Promise<void> {
  await app.init();
  await app.startAllMicroservices();
}

/** Creates the service's application, records HTTP metrics per route, serves NATS, and listens. */
export async function startHttpService(
  module: unknown,
  options: {
    host: string;
    port: number;
    trustProxy?: string[];
    frameworkErrors?: FrameworkErrorHandler;
    /**
     * Lets the heap grow to this many percent past what the last full collection kept, before the
     * next (V8's `--heap-growing-percent`; by default it may grow to several times it). For a
     * process whose live heap stays small under load while it promotes much short-lived data:
     * the gateway's old space grew by ~7 MB/s under the append load, nearly all garbage, to
     * 240 MB resident before V8 collected it; with 100 % it peaks at ~185 MB. Too little room
     * costs CPU instead: a full collection marks the whole live heap (docs/configuration.md).
     */
    heapGrowthPercent?: number;
    configure?: (app: NestFastifyApplication) => void | Promise<void>;
  },
): Promise<NestFastifyApplication> {
  const app = await createServiceApp(module, {
    trustProxy: options.trustProxy,
    frameworkErrors: options.frameworkErrors,
  });
  const logger = app.get<Logger>(LOGGER);
  app.useLogger(new PinoNestLogger(logger));
  app.enableShutdownHooks();
  const metrics = app.get(Metrics);
  installProcessPolicy(logger, metrics);
  const fastify = app.getHttpAdapter().getInstance();
  fastify.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions.url ?? 'unmatched';
    const labels = { method: request.method, route, status: String(reply.statusCode) };
    metrics.httpRequests.inc(labels);
    metrics.httpDuration.observe(labels, reply.elapsedTime / 1000);
    done();
  });
  await options.configure?.(app);
  await startServing(app);
  await app.listen(options.port, options.host);
  logger.info({ url: await app.getUrl() }, 'listening');
  // With NODE_COMPILE_CACHE set, what the start compiled goes to disk now for the next start
  // (Node would write it only at a clean exit, which a service stopped by a signal never makes).
  flushCompileCache();
  // Read by V8 at each full collection: set before the one below, whose limit it then sets.
  if (options.heapGrowthPercent) setFlagsFromString(`--heap-growing-percent=${options.heapGrowthPercent}`);
  collectStartupGarbage(logger);
  return app;
}

/**
 * One memory-reducing collection once the service listens. Much of what start-up allocated
 * (modules' initialisation, metadata discovery, migrations, the gateway's OpenAPI document) is
 * garbage by then, but V8 keeps the pages it sits on until a full collection compacts them —
 * which an idle service may not reach for a long time. It takes a few hundred milliseconds,
 * once, and about 12 MB less stays resident. `gc` exists only with `--expose-gc`, which the services'
 * start commands pass (docs/configuration.md); without it this does nothing.
 */
function collectStartupGarbage(logger: Logger): void {
  if (typeof globalThis.gc !== 'function') return;
  const started = performance.now();
  globalThis.gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
  logger.debug(
    {
      ms: Math.round(performance.now() - started),
      heap_used_mib: Math.round(process.memoryUsage().heapUsed / 2 ** 20),
    },
    'start-up garbage collected',
  );
}

/**
 * What no handler caught is logged and counted, and the process goes on: no message, however
 * malformed, stops a service (handlers and subscriptions guard themselves; this is the last net).
 */
export function installProcessPolicy(logger: Logger, metrics: Metrics): void {
  process.on('unhandledRejection', (reason) => {
    metrics.unexpectedErrors.inc({ kind: 'unhandled_rejection' });
    logger.error({ err: reason }, 'unhandled promise rejection');
  });
  process.on('uncaughtException', (error, origin) => {
    metrics.unexpectedErrors.inc({ kind: 'uncaught_exception' });
    logger.error({ err: error, origin }, 'uncaught exception');
  });
}

/**
 * The exit status of a process stopped by its configuration (sysexits' EX_CONFIG): starting it
 * again unchanged cannot help, and `npm start` does not.
 */
export const EXIT_CONFIG = 78;

/** Runs a service's main; a configuration problem is printed plainly (no stack) and stops the process. */
export function runMain(main: () => Promise<unknown>): void {
  main().catch((error: unknown) => {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(EXIT_CONFIG);
    }
    process.stderr.write(`fatal: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  });
}
