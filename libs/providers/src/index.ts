export * from './types.js';
export * from './errors.js';
export * from './health.js';
export * from './registry.js';
export * from './stt/index.js';
export * from './llm/index.js';
export * from './tts/index.js';
export * from './vad/index.js';
