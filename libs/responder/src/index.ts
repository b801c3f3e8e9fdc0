export * from './prompts.js';
export * from './responder.js';
export * from './tools.js';
