import { describe, expect, it } from 'vitest';
import { providerNames, type ProviderKind } from '../src/index.js';

/**
 * The registered adapters whose kind's conformance suite runs in this folder (<kind>.test.ts, llm via the
 * OpenAI-compatible adapter, the fallbacks of each kind beside them). Registering an adapter fails this test until
 * its `describe…Conformance` call is added and its name listed here.
 */
const COVERED: Record<ProviderKind, string[]> = {
  stt: ['deepgram', 'fake', 'local', 'timed'],
  llm: ['fake', 'openai'],
  tts: ['elevenlabs', 'fake', 'local', 'openai'],
  vad: ['energy', 'fake', 'silero'],
  eou: ['heuristic'],
};

describe('provider registry', () => {
  it('every registered adapter runs through its kind’s conformance suite', () => {
    for (const kind of Object.keys(COVERED) as ProviderKind[]) {
      expect([...providerNames(kind)].sort(), kind).toEqual(COVERED[kind]);
    }
  });
});
