import { registerProvider } from '../registry.js';
import { deepgramSttFromEnv } from './deepgram.js';
import { fakeSttFromEnv } from './fake.js';
import { LocalSTT } from './local.js';
import { timedSttFromEnv } from './timed.js';

export {
  LocalSTT,
  configureDecoderPool,
  preloadDecoder,
  decoderPoolStats,
  closeDecoderPools,
  LOCAL_STT_PROCESS_ENV,
  type LocalSTTOptions,
  type DecoderPoolOptions,
  type DecoderPoolStats,
} from './local.js';
export { SpeechGate, SPEECH_GATE_DEFAULTS, type SpeechGateOptions } from './speech-gate.js';
export { FakeSTT, fakeSttFromEnv, type FakeResponder, type FakeSttScript, type ScriptedTranscript } from './fake.js';
export { TimedSTT, TIMED_STT_DEFAULTS, timedSttFromEnv, type TimedSttOptions } from './timed.js';
export { DeepgramSTT, DEEPGRAM_STT_DEFAULTS, deepgramSttFromEnv, type DeepgramSttOptions } from './deepgram.js';
export { DEFAULT_MODEL_DIR as POCKETSPHINX_MODEL_DIR } from './worker-protocol.js';

// STT_MODEL_DIR overrides Debian's pocketsphinx-en-us model directory.
registerProvider('stt', 'local', (env) => LocalSTT.create({ modelDir: env.STT_MODEL_DIR || undefined }));
registerProvider('stt', 'fake', (env) => fakeSttFromEnv(env));
registerProvider('stt', 'timed', (env) => timedSttFromEnv(env));
registerProvider('stt', 'deepgram', (env) => deepgramSttFromEnv(env));
