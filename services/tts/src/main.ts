import { parseEnv, runService, ServiceEnv } from '@va/actor';
import { createProvider } from '@va/providers';
import { z } from 'zod';
import { STAGE, ttsActor } from './actor.js';

const env = parseEnv(ServiceEnv.extend({ TTS_PROVIDER: z.string().default('local') }));
// One synthesizer serves every session of this instance: adapters keep no per-stream state between calls.
const tts = await createProvider('tts', env.TTS_PROVIDER);
await runService({ stage: STAGE, env, createActor: ttsActor(tts) });
