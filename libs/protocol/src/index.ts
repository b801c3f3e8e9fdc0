export * from './ids.js';
export * from './subjects.js';
export * from './messages.js';
export * from './channels.js';
export * from './audio.js';
export * from './kv.js';
export * from './recording.js';
export * from './permissions.js';
