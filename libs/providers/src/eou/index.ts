import { registerProvider } from '../registry.js';
import { heuristicEou } from './heuristic.js';

export * from './heuristic.js';

registerProvider('eou', 'heuristic', () => heuristicEou);
