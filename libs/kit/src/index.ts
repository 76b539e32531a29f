export * from './config';
export * from './observability';
export * from './messaging';
export * from './persistence';
export * from './nest';
