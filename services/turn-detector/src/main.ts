import { parseEnv, runService, ServiceEnv } from '@va/actor';
import { createProvider } from '@va/providers';
import { z } from 'zod';
import { STAGE, turnDetectorActor } from './actor.js';

const env = parseEnv(
  ServiceEnv.extend({
    VAD_PROVIDER: z.string().default('silero'),
    /** `fixed` is LiveKit Agents' default (500 ms after VAD end), kept as the benchmark baseline. */
    TURN_ENDPOINTING: z.enum(['adaptive', 'fixed']).default('adaptive'),
    TURN_FIXED_DELAY_MS: z.coerce.number().int().nonnegative().default(500),
  }),
);
await runService({
  stage: STAGE,
  env,
  createActor: turnDetectorActor(() => createProvider('vad', env.VAD_PROVIDER), {
    mode: env.TURN_ENDPOINTING,
    fixedDelayMs: env.TURN_FIXED_DELAY_MS,
  }),
});
