import { describe, expect, it } from 'vitest';
import { createProvider, providerNames } from '../src/index.js';
import { endOfUtteranceProbability, heuristicEou, soundsUnfinished } from '../src/eou/index.js';
import { eouConformance } from './eou.conformance.js';

// Every registered end-of-utterance model passes the kind's suite.
for (const name of providerNames('eou')) eouConformance(name, () => createProvider('eou', name));

describe('the heuristic end-of-utterance model', () => {
  it('is the registered default, and hears a trailing conjunction or article as unfinished', async () => {
    expect(await createProvider('eou', 'heuristic')).toBe(heuristicEou);
    expect(soundsUnfinished('book a table for two and')).toBe(true);
    expect(soundsUnfinished('is it raining?')).toBe(false);
    expect(endOfUtteranceProbability('what time is it')).toBeGreaterThan(endOfUtteranceProbability('a table with'));
  });
});
