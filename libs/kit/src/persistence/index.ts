export * from './orm';
