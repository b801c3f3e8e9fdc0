export * from './history.js';
export * from './replica.js';
