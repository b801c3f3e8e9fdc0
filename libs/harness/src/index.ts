export * from './pipeline.js';
export * from './report.js';
