import 'reflect-metadata';
import { serviceMain } from '@parley/kit';
import { AppModule } from './app.module';
import { loadConfig } from './config';
import { database } from './database';

serviceMain({
  service: 'message',
  loadConfig,
  httpPort: (config) => config.MESSAGE_HTTP_PORT,
  module: (config) => AppModule.forRoot(config),
  database,
});
