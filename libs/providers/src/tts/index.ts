import { z } from 'zod';
import { optionalEnv, parseProviderEnv } from '../env.js';
import { registerProvider } from '../registry.js';
import { FakeTTS } from './fake.js';
import { LocalTTS } from './local.js';
import { openAITtsFromEnv } from './openai.js';
import { elevenLabsFromEnv } from './elevenlabs.js';

export {
  segmentSentences,
  SentenceSegmenter,
  isSpeakable,
  type TextSegment,
  type SentenceSegmenterOptions,
} from './segmenter.js';
export { speakStream, type SegmentSynth, type SpeakStreamOptions } from './stream.js';
export { LocalTTS, type LocalTtsOptions } from './local.js';
export { FakeTTS, type FakeTtsOptions } from './fake.js';
export {
  OpenAITTS,
  openAITtsFromEnv,
  speakSegmentsStreamed,
  OPENAI_TTS_PCM_RATE,
  type OpenAITtsOptions,
  type SegmentAudioStream,
  type StreamedSegmentsOptions,
} from './openai.js';
export { ElevenLabsTTS, elevenLabsFromEnv, type ElevenLabsTtsOptions } from './elevenlabs.js';

const LocalEnv = z.object({
  TTS_FLITE_BIN: optionalEnv(z.string()),
  TTS_VOICE: optionalEnv(z.string()),
});

const FakeEnv = z.object({
  TTS_FAKE_MS_PER_CHAR: optionalEnv(z.coerce.number().positive()),
  TTS_FAKE_TTFB_MS: optionalEnv(z.coerce.number().min(0)),
  TTS_FAKE_RTF: optionalEnv(z.coerce.number().min(0)),
});

registerProvider('tts', 'local', (env) => {
  const e = parseProviderEnv(LocalEnv, env, 'local TTS');
  return new LocalTTS({ binary: e.TTS_FLITE_BIN, voice: e.TTS_VOICE });
});

registerProvider('tts', 'fake', (env) => {
  const e = parseProviderEnv(FakeEnv, env, 'fake TTS');
  return new FakeTTS({ msPerChar: e.TTS_FAKE_MS_PER_CHAR, ttfbMs: e.TTS_FAKE_TTFB_MS, rtf: e.TTS_FAKE_RTF });
});

registerProvider('tts', 'openai', (env) => openAITtsFromEnv(env));

registerProvider('tts', 'elevenlabs', (env) => elevenLabsFromEnv(env));
