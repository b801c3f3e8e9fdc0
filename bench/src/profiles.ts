import type { LlmPace } from '@va/e2e';

/**
 * Named latency profiles for the providers. Cloud profiles use timed fakes (the providers' timing, none of their
 * words); `offline` uses the real local providers. The pipeline around them is always the real one.
 */
export interface Profile {
  name: string;
  env: Record<string, string>;
  fastLlm: LlmPace;
  deepLlm: LlmPace;
}

/** Bench user turns: short, generic, and what the timed recogniser "hears" in this order. */
export const BENCH_SENTENCES = [
  'what is the weather like today',
  'set an alarm for seven in the morning',
  'can you recommend a good book',
  'how far is the nearest train station',
  'remind me to call my sister',
];

function timed(sttFinalMs: number, ttsFirstByteMs: number): Record<string, string> {
  return {
    STT_PROVIDER: 'timed',
    TIMED_STT_FINAL_MS: String(sttFinalMs),
    TIMED_STT_PARTIAL_MS: '100',
    TIMED_STT_TEXTS: JSON.stringify(BENCH_SENTENCES),
    TTS_PROVIDER: 'fake',
    TTS_FAKE_TTFB_MS: String(ttsFirstByteMs),
    // Short agent audio keeps turns short: the bench measures latency, not speech length.
    TTS_FAKE_MS_PER_CHAR: '12',
  };
}

export const PROFILES = {
  'fast-cloud': {
    name: 'fast-cloud',
    env: timed(100, 75),
    fastLlm: { ttftMs: 120, tokensPerSecond: 150 },
    deepLlm: { ttftMs: 160, tokensPerSecond: 150 },
  },
  'typical-cloud': {
    name: 'typical-cloud',
    env: timed(250, 300),
    fastLlm: { ttftMs: 350, tokensPerSecond: 100 },
    deepLlm: { ttftMs: 700, tokensPerSecond: 60 },
  },
  offline: {
    name: 'offline',
    env: { STT_PROVIDER: 'local', TTS_PROVIDER: 'local' },
    fastLlm: { ttftMs: 50, tokensPerSecond: 120 },
    deepLlm: { ttftMs: 150, tokensPerSecond: 60 },
  },
} as const satisfies Record<string, Profile>;
export type ProfileName = keyof typeof PROFILES;

/**
 * The configurations compared in one run. `baseline` behaves like LiveKit Agents' defaults: fixed 500 ms
 * endpointing after VAD end, no opener (one model answers), no preemptive generation.
 */
export const VARIANTS = {
  ours: { env: {}, stages: undefined },
  baseline: {
    env: { TURN_ENDPOINTING: 'fixed', TURN_FIXED_DELAY_MS: '500', TURN_PREEMPTIVE_GENERATION: '0' },
    stages: ['stt', 'turn-detector', 'deep-responder', 'tts', 'session-context'],
  },
} as const;
export type VariantName = keyof typeof VARIANTS;
