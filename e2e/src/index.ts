export * from './pipeline.js';
export * from './report.js';
export * from './trace-view.js';
export * from './gateway.js';
export * from './soak.js';
export * from './chaos.js';
export * from './reverse-proxy.js';
