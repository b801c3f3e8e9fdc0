export * from './pcm.js';
export * from './wav.js';
export * from './resample.js';
export * from './clock.js';
export * from './noise-floor.js';
export * from './scripted-mic.js';
export * from './frame-ticker.js';
