export * from './errors';
export * from './pagination';
export * from './rpc';
export * from './principal';
export * from './common';
export * from './access';
export * from './session';
export * from './events';
