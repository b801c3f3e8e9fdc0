import { parseEnv, runService, ServiceEnv } from '@va/actor';
import { createProvider } from '@va/providers';
import { z } from 'zod';
import { STAGE, sttActor } from './actor.js';

const env = parseEnv(ServiceEnv.extend({ STT_PROVIDER: z.string().default('local') }));
await runService({ stage: STAGE, env, createActor: sttActor(() => createProvider('stt', env.STT_PROVIDER)) });
