export * from './orm';
export * from './cursors';
export * from './keyset';
export * from './redis';
export * from './statements';
