export * from './prompts.js';
export * from './responder.js';
