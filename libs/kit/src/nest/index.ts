export * from './tokens';
export * from './kit.module';
export * from './readiness';
export * from './bootstrap';
export * from './public.decorator';
export * from './health.controller';
export * from './service-main';
