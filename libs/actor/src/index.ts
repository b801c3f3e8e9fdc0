export * from './context.js';
export * from './host.js';
export * from './session.js';
export * from './service.js';
export * from './health.js';
export * from './load.js';
export * from './capacity.js';
export * from './recent.js';
