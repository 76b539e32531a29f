export * from './nats';
export * from './rpc';
export * from './trace';
export * from './jetstream';
export * from './outbox';
export * from './consumer';
export * from './batch-consumer';
export * from './failures';
