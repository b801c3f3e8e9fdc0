import { describe, expect, it } from 'vitest';
import {
  EnergyVAD,
  heuristicEou,
  providerChain,
  providerNames,
  type FailoverEvent,
  type ProviderKind,
} from '../src/index.js';

/**
 * The registered adapters whose kind's conformance suite runs in this folder (<kind>.test.ts; the llm presets are
 * all the OpenAI-compatible adapter, whose suite runs; the fallbacks of each kind beside them). Registering an adapter fails this test until
 * its `describe…Conformance` call is added and its name listed here.
 */
const COVERED: Record<ProviderKind, string[]> = {
  stt: ['deepgram', 'fake', 'local', 'timed'],
  llm: ['cerebras', 'compatible', 'fake', 'groq', 'llamacpp', 'ollama', 'openai', 'vllm'],
  tts: ['elevenlabs', 'fake', 'local', 'openai'],
  vad: ['energy', 'fake', 'silero'],
  eou: ['heuristic', 'ngram-prosody'],
};

describe('provider registry', () => {
  it('every registered adapter runs through its kind’s conformance suite', () => {
    for (const kind of Object.keys(COVERED) as ProviderKind[]) {
      expect([...providerNames(kind)].sort(), kind).toEqual(COVERED[kind]);
    }
  });
});

describe('providerChain: one way to name the provider of every kind', () => {
  it('vad and eou: the first provider that builds, each one passed over reported as a failover', async () => {
    const failovers: FailoverEvent[] = [];
    const vad = await providerChain('vad', 'silero, energy', { VAD_MODEL_PATH: '/nonexistent/silero.onnx' }, (e) =>
      failovers.push(e),
    );
    expect(vad).toBeInstanceOf(EnergyVAD);
    expect(failovers).toEqual([{ provider: 'silero', reason: 'error', error: expect.any(Error) }]);
    expect(await providerChain('eou', 'heuristic', {})).toBe(heuristicEou);
    await expect(providerChain('vad', 'silero', { VAD_MODEL_PATH: '/nonexistent/silero.onnx' })).rejects.toThrow(
      /no vad provider could be built \(silero: /,
    );
  });

  it('a name nobody registered is a configuration error, never failed over; an empty spec names none', async () => {
    await expect(providerChain('vad', 'sielro,energy', {})).rejects.toThrow(/unknown vad provider "sielro"/);
    await expect(providerChain('stt', 'fake,nope', {})).rejects.toThrow(/unknown stt provider "nope"/);
    await expect(providerChain('tts', ' , ', {})).rejects.toThrow(/no tts provider named/);
  });

  it('llm: `preset:model` entries, the first taking the LLM_* overrides, more than one a fallback chain', async () => {
    const one = await providerChain('llm', 'ollama:llama3.2:1b', {});
    expect(one).toMatchObject({ provider: 'ollama', model: 'llama3.2:1b', baseURL: 'http://127.0.0.1:11434/v1' });
    const chain = await providerChain('llm', 'compatible:a,ollama:b', { LLM_BASE_URL: 'http://127.0.0.1:9/v1' });
    expect(chain).toMatchObject({ provider: 'fallback', model: 'openai/a > ollama/b' });
  });
});
