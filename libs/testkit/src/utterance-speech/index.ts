// Synthetic speech with marked mid-utterance pauses, for the end-of-turn benchmark and its tests.
export { speakMarked } from './speak-marked.js';
export { parseSpeakerVoices, formatSpeakerVoice, EOT_VOICES, type SpeakerVoice } from './voices.js';
export { MIN_PAUSE_MS } from './measure.js';
export type { PauseStyle, MarkedPause, MarkedUtterance, SpeakMarkedOptions } from './types.js';
