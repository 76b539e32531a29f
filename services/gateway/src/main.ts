import 'reflect-metadata';
import { LOGGER, serviceMain, type Logger } from '@parley/kit';
import { AppModule } from './app.module';
import { loadConfig } from './config';
import { installBodyParsers } from './http/body-parser';
import { sendProblem } from './http/problem.filter';

// Set once the application exists; Fastify's refusals before routing are rare enough to log at it.
let logger: Logger | undefined;

serviceMain({
  service: 'gateway',
  loadConfig,
  httpPort: (config) => config.GATEWAY_PORT,
  module: (config) => AppModule.forRoot(config),
  trustProxy: (config) => config.TRUST_PROXY,
  // Under load the gateway promotes much short-lived data (requests in flight) while its live
  // heap stays ~40 MB: collected sooner, it stays within its memory budget. 50 % collected so
  // often that marking cost ~100 µs of CPU per list request (docs/configuration.md).
  heapGrowthPercent: 100,
  // A URL Fastify cannot decode, or a path parameter over its length limit: a problem too.
  frameworkErrors: (error, request, reply) => {
    void sendProblem(reply, request, error, logger);
  },
  configure: (app, config) => {
    logger = app.get<Logger>(LOGGER);
    // Errors raised by Fastify itself once a route matched (body parsing, size limit) reach
    // ProblemFilter through the error handler Nest installs on Fastify: a handler set here
    // would only be replaced by it (and Fastify warns of the override on stderr).
    installBodyParsers(app);
    if (config.CORS_ORIGINS.length > 0) {
      app.enableCors({ origin: config.CORS_ORIGINS, credentials: true, exposedHeaders: ['Retry-After', 'Location'] });
    }
  },
});
