import { registerProvider } from '../registry.js';
import { heuristicEou } from './heuristic.js';
import { ngramProsodyEou } from './ngram-prosody.js';

export * from './heuristic.js';
export * from './ngram.js';
export * from './prosody.js';
export * from './ngram-prosody.js';

registerProvider('eou', 'heuristic', () => heuristicEou);
registerProvider('eou', 'ngram-prosody', () => ngramProsodyEou());
