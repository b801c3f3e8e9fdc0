export * from './prompts.js';
export * from './responder.js';
export * from './tools.js';
export * from './answer.js';
export * from './history.js';
export * from './session-responder.js';
export * from './session-agent.js';
