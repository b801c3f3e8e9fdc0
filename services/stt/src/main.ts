import { parseEnv, runService, ServiceEnv } from '@va/actor';
import {
  failoverCounter,
  configureDecoderPool,
  decoderPoolStats,
  POCKETSPHINX_MODEL_DIR,
  preloadDecoder,
  providerChain,
} from '@va/providers';
import { ATTR, METRIC, observableGauge } from '@va/telemetry';
import { z } from 'zod';
import { STAGE, sttActor } from './actor.js';

const env = parseEnv(
  ServiceEnv.extend({
    STT_PROVIDER: z.string().default('local'),
    STT_MODEL_DIR: z.string().optional(),
    /** Keep one pocketsphinx decoder loaded ahead, so a speaker never waits for a model load. */
    STT_SPARE_DECODER: z.enum(['0', '1']).default('1'),
    /**
     * Most pocketsphinx decoders this instance loads (≈ 100 MB each; 6 fit the 1 Gi of the Kubernetes manifest).
     * Up to it every session has one ready; beyond it sessions share them, and a speaker finding all busy waits.
     */
    STT_DECODERS_MAX: z.coerce.number().int().min(1).default(6),
  }),
);
const localStt = env.STT_PROVIDER.split(',').includes('local');
const modelDir = env.STT_MODEL_DIR || POCKETSPHINX_MODEL_DIR;
if (localStt) {
  configureDecoderPool({ spare: env.STT_SPARE_DECODER === '1' ? 1 : 0, max: env.STT_DECODERS_MAX });
  await preloadDecoder(modelDir);
}
// STT_PROVIDER is one provider or a fallback chain, e.g. `deepgram,local`.
await runService({
  stage: STAGE,
  env,
  // After telemetry has started (an instrument made before it is a no-op for good).
  prepare: () => {
    if (!localStt) return;
    for (const state of ['loaded', 'leased', 'waiting'] as const) {
      observableGauge(METRIC.sttDecoders, () => decoderPoolStats(modelDir)[state], { [ATTR.decoderState]: state });
    }
  },
  createActor: sttActor(() => providerChain('stt', env.STT_PROVIDER, process.env, failoverCounter(STAGE))),
});
