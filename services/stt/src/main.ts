import { parseEnv, runService, ServiceEnv } from '@va/actor';
import { providerChain } from '@va/providers';
import { counter, METRIC, ATTR } from '@va/telemetry';
import { z } from 'zod';
import { STAGE, sttActor } from './actor.js';

const env = parseEnv(ServiceEnv.extend({ STT_PROVIDER: z.string().default('local') }));
// STT_PROVIDER is one provider or a fallback chain, e.g. `deepgram,local`.
const onFailover = (e: { provider: string; reason: string }) =>
  counter(METRIC.fallbacks).add(1, {
    [ATTR.stage]: STAGE,
    [ATTR.provider]: e.provider,
    [ATTR.failoverReason]: e.reason,
  });
await runService({
  stage: STAGE,
  env,
  createActor: sttActor(() => providerChain('stt', env.STT_PROVIDER, process.env, onFailover)),
});
