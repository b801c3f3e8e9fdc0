import { setTimeout as sleep } from 'node:timers/promises';
import { samplesForMs } from '@va/audio';
import type { SpeakOptions, SpeechChunk, TTS } from '../types.js';
import type { SentenceSegmenterOptions } from './segmenter.js';
import { speakStream } from './stream.js';

export interface FakeTtsOptions extends SentenceSegmenterOptions {
  /** Default 16000. */
  sampleRate?: number;
  /** Audio per character of a segment. Default 60 ms (about flite's pace). */
  msPerChar?: number;
  /** Extra wait before the first segment's audio (a cloud provider's time to first byte). Default 0. */
  ttfbMs?: number;
  /** Synthesis time per segment as a share of its audio's duration (0.1 = ten times faster than real time). Default 0. */
  rtf?: number;
  /** Tone pitch. Default 220 Hz. */
  toneHz?: number;
}

/**
 * Deterministic stand-in for tests: a tone, one "syllable" (a Hann-shaped burst) per letter or digit and a gap
 * for anything else, so the audio is clearly non-silent and its length follows the text. Same pipeline,
 * segmenting and textOffset semantics as the real adapters.
 */
export class FakeTTS implements TTS {
  readonly provider = 'fake';
  readonly sampleRate: number;
  /** Segment texts synthesized so far, in order (lets tests see the segmenting). */
  readonly segments: string[] = [];
  /** The voice each synthesis asked for (undefined: the adapter's own). */
  readonly voices: (string | undefined)[] = [];

  constructor(private readonly opts: FakeTtsOptions = {}) {
    this.sampleRate = opts.sampleRate ?? 16000;
  }

  synthesize(text: AsyncIterable<string>, signal: AbortSignal, opts?: SpeakOptions): AsyncIterable<SpeechChunk> {
    this.voices.push(opts?.voice);
    return speakStream(text, signal, (t, i, s) => this.speak(t, i, s), { ...this.opts, sampleRate: this.sampleRate });
  }

  private async speak(text: string, index: number, signal: AbortSignal): Promise<Int16Array> {
    const msPerChar = this.opts.msPerChar ?? 60;
    const wait = (index === 0 ? (this.opts.ttfbMs ?? 0) : 0) + (this.opts.rtf ?? 0) * msPerChar * text.length;
    if (wait > 0) await sleep(wait, undefined, { signal });
    signal.throwIfAborted();
    this.segments.push(text);
    return tone(text, msPerChar, this.opts.toneHz ?? 220, this.sampleRate);
  }
}

/** One syllable per shape: the same burst for every letter (cheap enough for hundreds of sessions at once). */
const syllables = new Map<string, Int16Array>();

function syllable(per: number, hz: number, rate: number): Int16Array {
  const key = `${per}:${hz}:${rate}`;
  let s = syllables.get(key);
  if (!s) {
    s = new Int16Array(per);
    for (let k = 0; k < per; k++) {
      const envelope = 0.5 - 0.5 * Math.cos((2 * Math.PI * k) / per);
      s[k] = Math.round(0.3 * 32767 * envelope * Math.sin((2 * Math.PI * hz * k) / rate));
    }
    syllables.set(key, s);
  }
  return s;
}

const LETTER_OR_DIGIT = /[\p{L}\p{N}]/u;

function tone(text: string, msPerChar: number, hz: number, rate: number): Int16Array {
  const per = samplesForMs(msPerChar, rate);
  const burst = syllable(per, hz, rate);
  const out = new Int16Array(per * text.length);
  for (let c = 0; c < text.length; c++) if (LETTER_OR_DIGIT.test(text[c]!)) out.set(burst, c * per);
  return out;
}
