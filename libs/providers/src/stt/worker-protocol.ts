import type { TranscriptEvent } from '../types.js';

/** What pocketsphinx's en-us model wants. */
export const DECODER_SAMPLE_RATE = 16000;
/** Debian `pocketsphinx-en-us`. */
export const DEFAULT_MODEL_DIR = '/usr/share/pocketsphinx/model/en-us';

/**
 * Messages between LocalSTT (main thread) and the decoder worker. Every stream message carries the id of its
 * transcription (`run`), so stragglers of an aborted run can never leak into the next one.
 */
export type ToWorker =
  | { type: 'start'; run: number }
  /** 16 kHz PCM16 covering [startMs, endMs) of the audio clock. */
  | { type: 'audio'; run: number; samples: Int16Array; startMs: number; endMs: number }
  /** Input ended: finish the utterance (final if it has words). */
  | { type: 'end'; run: number }
  /** Stop now: end the utterance, emit nothing. */
  | { type: 'abort'; run: number }
  /** Free the decoder and exit. */
  | { type: 'close' };

export type FromWorker =
  | { type: 'ready'; loadMs: number }
  | { type: 'event'; run: number; event: TranscriptEvent }
  /** One audio message was decoded (flow control). */
  | { type: 'consumed'; run: number }
  /** The run finished after `end` or `abort`. */
  | { type: 'done'; run: number }
  /** Loading or decoding failed; the worker is unusable afterwards. */
  | { type: 'error'; message: string };

export interface DecoderWorkerData {
  modelDir: string;
}
