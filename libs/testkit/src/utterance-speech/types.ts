import type { Pcm } from '@va/audio';

/**
 * 'phrase': the pause is a prosodic phrase break (continuation intonation, as after a comma).
 * 'cut': no prosodic cue: the sentence is spoken straight through and quiet is spliced in at the word boundary.
 */
export type PauseStyle = 'phrase' | 'cut';

export interface MarkedPause {
  /** Last audible sample before the pause, ms from the start of pcm. */
  startMs: number;
  /** First audible sample after it. */
  endMs: number;
  /** All words spoken before the pause, space-separated. */
  wordsBefore: string;
  /** The style actually used (a 'cut' the engine cannot do falls back to 'phrase'). */
  style: PauseStyle;
}

export interface MarkedUtterance {
  /** 16 kHz mono PCM16, light dither (never digital zero), `leadMs` of quiet before the speech and `tailMs` after. */
  pcm: Pcm;
  /** Each marked pause as measured in the audio: speech stops at startMs, resumes at endMs; wordsBefore = the words spoken before it. */
  pauses: MarkedPause[];
  /** Where the speech really ends (last audible sample of the last word), ms from the start of pcm. */
  speechEndMs: number;
  speechStartMs: number;
}

export interface SpeakMarkedOptions {
  /** One per marker; default 'phrase'. */
  styles?: readonly PauseStyle[];
  /** Quiet before the speech, ms (plus up to 20 ms of the engine's own, before the first sound). Default 300. */
  leadMs?: number;
  /** Quiet after the speech, ms. Default 2000: room for a turn detector to decide. */
  tailMs?: number;
}
