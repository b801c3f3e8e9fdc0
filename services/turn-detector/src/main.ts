import { parseEnv, runService, ServiceEnv } from '@va/actor';
import { createProvider } from '@va/providers';
import { z } from 'zod';
import { STAGE, turnDetectorActor } from './actor.js';

const env = parseEnv(ServiceEnv.extend({ VAD_PROVIDER: z.string().default('silero') }));
await runService({ stage: STAGE, env, createActor: turnDetectorActor(() => createProvider('vad', env.VAD_PROVIDER)) });
