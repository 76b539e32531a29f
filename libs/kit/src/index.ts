// What every service loads. Whatever needs MikroORM (the ORM, migrations, cursors and keyset,
// the outbox) is in `@parley/kit/database` (src/database.ts), so the gateway, which has no
// database, does not load it.
export * from './config';
export * from './observability';
export * from './messaging';
export * from './persistence/redis';
export * from './nest';
