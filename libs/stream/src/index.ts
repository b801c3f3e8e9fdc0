export * from './queue.js';
export * from './abort.js';
