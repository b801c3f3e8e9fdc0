import { parseEnv, runService, ServiceEnv } from '@va/actor';
import { failoverCounter, providerChain } from '@va/providers';
import { z } from 'zod';
import { STAGE, ttsActor, TTS_DEFAULTS } from './actor.js';

const env = parseEnv(
  ServiceEnv.extend({
    TTS_PROVIDER: z.string().default('local'),
    TTS_FILLER_AFTER_MS: z.coerce.number().int().min(0).max(10_000).default(TTS_DEFAULTS.fillerAfterMs),
    /** Fillers separated by `|`; empty turns them off. */
    TTS_FILLERS: z.string().max(1000).default(TTS_DEFAULTS.fillers.join('|')),
  }),
);
// One synthesizer serves every session of this instance: adapters keep no per-stream state between calls.
// TTS_PROVIDER is one provider or a fallback chain, e.g. `elevenlabs,openai,local`.
const tts = await providerChain('tts', env.TTS_PROVIDER, process.env, failoverCounter(STAGE));
const fillers = env.TTS_FILLERS.split('|')
  .map((f) => f.trim())
  .filter(Boolean);
await runService({
  stage: STAGE,
  env,
  createActor: ttsActor(tts, { fillerAfterMs: env.TTS_FILLER_AFTER_MS, fillers }),
});
