import { parseEnv, runService, ServiceEnv } from '@va/actor';
import {
  configureDecoderPool,
  decoderPoolStats,
  POCKETSPHINX_MODEL_DIR,
  preloadDecoder,
  providerChain,
} from '@va/providers';
import { ATTR, counter, meter, METRIC } from '@va/telemetry';
import { z } from 'zod';
import { STAGE, sttActor } from './actor.js';

const env = parseEnv(
  ServiceEnv.extend({
    STT_PROVIDER: z.string().default('local'),
    STT_MODEL_DIR: z.string().optional(),
    /** Keep one pocketsphinx decoder loaded ahead, so a speaker never waits for a model load. */
    STT_SPARE_DECODER: z.enum(['0', '1']).default('1'),
    /**
     * Most pocketsphinx decoders this instance loads (≈ 110 MB each). Sessions share them: one is leased while a
     * session's audio has sound in it, so this bounds the sessions *speaking* at once; beyond it a speaker waits.
     */
    STT_DECODERS_MAX: z.coerce.number().int().min(1).default(8),
  }),
);
if (env.STT_PROVIDER.split(',').includes('local')) {
  configureDecoderPool({ spare: env.STT_SPARE_DECODER === '1' ? 1 : 0, max: env.STT_DECODERS_MAX });
  const modelDir = env.STT_MODEL_DIR || POCKETSPHINX_MODEL_DIR;
  await preloadDecoder(modelDir);
  const pool = meter().createObservableGauge(METRIC.sttDecoders, {
    description: 'pocketsphinx decoders of this instance, by state (loaded, leased, waiting for one)',
  });
  pool.addCallback((gauge) => {
    const stats = decoderPoolStats(modelDir);
    gauge.observe(stats.loaded, { [ATTR.decoderState]: 'loaded' });
    gauge.observe(stats.leased, { [ATTR.decoderState]: 'leased' });
    gauge.observe(stats.waiting, { [ATTR.decoderState]: 'waiting' });
  });
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
