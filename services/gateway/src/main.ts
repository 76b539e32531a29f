import 'reflect-metadata';
import { LOGGER, serviceMain, type Logger } from '@parley/kit';
import { AppModule } from './app.module';
import { loadConfig } from './config';
import { installBodyParsers } from './http/body-parser';
import { sendProblem } from './http/problem.filter';

serviceMain({
  service: 'gateway',
  loadConfig,
  httpPort: (config) => config.GATEWAY_PORT,
  module: (config) => AppModule.forRoot(config),
  trustProxy: (config) => config.TRUST_PROXY,
  configure: (app, config) => {
    const logger = app.get<Logger>(LOGGER);
    const fastify = app.getHttpAdapter().getInstance();
    // Errors raised by Fastify itself (body parsing, size limit) are problems too.
    fastify.setErrorHandler((error, request, reply) => sendProblem(reply, request, error, logger));
    installBodyParsers(app);
    if (config.CORS_ORIGINS.length > 0) {
      app.enableCors({ origin: config.CORS_ORIGINS, credentials: true, exposedHeaders: ['Retry-After', 'Location'] });
    }
  },
});
