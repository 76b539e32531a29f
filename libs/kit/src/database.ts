// `@parley/kit/database`: what a service with a PostgreSQL database adds to `@parley/kit`.
export * from './persistence/orm';
export * from './persistence/cursors';
export * from './persistence/keyset';
export * from './messaging/outbox';
export * from './nest/database';
export * from './persistence/statements';
