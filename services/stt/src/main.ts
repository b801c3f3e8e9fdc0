import { parseEnv, runService, ServiceEnv } from '@va/actor';
import { keepSpareDecoder, POCKETSPHINX_MODEL_DIR, preloadDecoder, providerChain } from '@va/providers';
import { counter, METRIC, ATTR } from '@va/telemetry';
import { z } from 'zod';
import { STAGE, sttActor } from './actor.js';

const env = parseEnv(
  ServiceEnv.extend({
    STT_PROVIDER: z.string().default('local'),
    STT_MODEL_DIR: z.string().optional(),
    /** Keep one pocketsphinx decoder loaded ahead, so opening a session does not wait for a model load. */
    STT_SPARE_DECODER: z.enum(['0', '1']).default('1'),
  }),
);
if (env.STT_SPARE_DECODER === '1' && env.STT_PROVIDER.split(',').includes('local')) {
  keepSpareDecoder(true);
  await preloadDecoder(env.STT_MODEL_DIR || POCKETSPHINX_MODEL_DIR);
}
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
