export * from './bus.js';
export * from './trace-headers.js';
export * from './origin.js';
export type { KV, KvEntry, KvWatchEntry } from '@nats-io/kv';
