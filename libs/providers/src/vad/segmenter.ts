import { Framer, type Pcm } from '@va/audio';
import type { AudioChunk, VAD } from '../types.js';

export interface SegmenterOptions {
  /** A frame at or above this counts towards speech starting, and cancels a pending end. */
  startThreshold: number;
  /** Once speaking, a frame below this starts the silence count (frames in between keep it going). */
  endThreshold: number;
  /** Speech must last this long before `start` fires (filters clicks). */
  minSpeechMs: number;
  /** Silence must last this long before `end` fires (bridges pauses between words). */
  minSilenceMs: number;
  /** How much audio before the speech start the `start` event carries. */
  preRollMs: number;
  /** The audio clock at the first sample pushed. */
  originMs: number;
}

const DEFAULTS = {
  startThreshold: 0.5,
  endThreshold: 0.35,
  minSpeechMs: 64,
  minSilenceMs: 300,
  preRollMs: 200,
  originMs: 0,
} satisfies SegmenterOptions;
export { DEFAULTS as SEGMENTER_DEFAULTS };

export type SegmentEvent =
  | {
      kind: 'start';
      /** Where the speech began: the first frame of the run that confirmed it, not the frame that confirmed it. */
      atMs: number;
      /**
       * Audio from `atMs − preRollMs` up to the end of what has been analysed, so a consumer that only listens
       * from `start` on (STT gating, barge-in) misses nothing. Later audio follows in the caller's own stream.
       */
      audio: AudioChunk;
    }
  | {
      kind: 'end';
      /** Where the silence began, not where it was confirmed (`minSilenceMs` later). */
      atMs: number;
    };

/**
 * Turns per-frame VAD probabilities into speech start/end events with hysteresis, on the stream's audio clock.
 * Push PCM of any length; it is re-chunked to the VAD's frame size. One segmenter (and VAD) per stream.
 */
export class SpeechSegmenter {
  readonly options: SegmenterOptions;
  private readonly framer: Framer;
  private readonly frameMs: number;
  private readonly keepSamples: number;
  /** Samples analysed so far (whole frames). */
  private analysed = 0;
  private pending = 0;
  private speaking = false;
  /** Frames in the current run: speech frames while idle, silence frames while speaking. */
  private run = 0;
  private last = 0;
  /** Recent frames for the pre-roll, oldest first; `recentStart` is the sample index of the first. */
  private recent: Int16Array[] = [];
  private recentStart = 0;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly vad: VAD,
    opts: Partial<SegmenterOptions> = {},
  ) {
    this.options = { ...DEFAULTS, ...opts };
    if (this.options.endThreshold > this.options.startThreshold) {
      throw new RangeError('SpeechSegmenter: endThreshold must not exceed startThreshold');
    }
    this.framer = new Framer(vad.frameSamples);
    this.frameMs = (vad.frameSamples * 1000) / vad.sampleRate;
    const runFrames = Math.ceil(this.options.minSpeechMs / this.frameMs) + 1;
    this.keepSamples = runFrames * vad.frameSamples + this.samplesFor(this.options.preRollMs);
  }

  get inSpeech(): boolean {
    return this.speaking;
  }

  /** Probability of the last analysed frame (for logs and barge-in confidence). */
  get lastProbability(): number {
    return this.last;
  }

  /** Calls run in order even if the caller does not await each one (state depends on frame order). */
  async push(audio: Int16Array | Pcm): Promise<SegmentEvent[]> {
    const samples = audio instanceof Int16Array ? audio : this.checkRate(audio);
    const done = this.queue.then(() => this.process(samples));
    this.queue = done.catch(() => undefined);
    return done;
  }

  /** End of stream: closes an open segment at the start of trailing silence, or at the last sample. */
  finish(): Promise<SegmentEvent[]> {
    const done = this.queue.then((): SegmentEvent[] => {
      if (!this.speaking) return [];
      this.speaking = false;
      const at = this.run > 0 ? this.analysed - this.run * this.vad.frameSamples : this.analysed + this.pending;
      this.run = 0;
      return [{ kind: 'end', atMs: this.msAt(at) }];
    });
    this.queue = done.catch(() => undefined);
    return done;
  }

  private async process(samples: Int16Array): Promise<SegmentEvent[]> {
    const { startThreshold, endThreshold, minSpeechMs, minSilenceMs, preRollMs } = this.options;
    const events: SegmentEvent[] = [];
    const frames = this.framer.push(samples);
    this.pending = (this.pending + samples.length) % this.vad.frameSamples;
    for (const frame of frames) {
      const p = await this.vad.speechProbability(frame);
      this.last = p;
      this.remember(frame);
      this.analysed += frame.length;
      if (!this.speaking) {
        this.run = p >= startThreshold ? this.run + 1 : 0;
        if (this.run > 0 && this.run * this.frameMs >= minSpeechMs) {
          const at = this.analysed - this.run * this.vad.frameSamples;
          events.push({ kind: 'start', atMs: this.msAt(at), audio: this.since(at - this.samplesFor(preRollMs)) });
          this.speaking = true;
          this.run = 0;
        }
      } else {
        if (p >= startThreshold) this.run = 0;
        else if (p < endThreshold || this.run > 0) this.run++;
        if (this.run > 0 && this.run * this.frameMs >= minSilenceMs) {
          events.push({ kind: 'end', atMs: this.msAt(this.analysed - this.run * this.vad.frameSamples) });
          this.speaking = false;
          this.run = 0;
        }
      }
    }
    return events;
  }

  private remember(frame: Int16Array): void {
    this.recent.push(frame);
    const end = this.analysed + frame.length;
    while (this.recent.length > 1 && end - (this.recentStart + this.recent[0]!.length) >= this.keepSamples) {
      this.recentStart += this.recent.shift()!.length;
    }
  }

  /** Remembered audio from sample `from` (clamped to what is kept) to the end of the analysed audio. */
  private since(from: number): AudioChunk {
    const start = Math.max(from, this.recentStart);
    const out = new Int16Array(this.analysed - start);
    let at = this.recentStart;
    for (const f of this.recent) {
      const lo = Math.max(start - at, 0);
      if (lo < f.length) out.set(f.subarray(lo), at + lo - start);
      at += f.length;
    }
    return { samples: out, sampleRate: this.vad.sampleRate, tsMs: this.msAt(start) };
  }

  private checkRate(pcm: Pcm): Int16Array {
    if (pcm.sampleRate !== this.vad.sampleRate) {
      throw new RangeError(
        `SpeechSegmenter: audio is ${pcm.sampleRate} Hz, ${this.vad.provider} VAD needs ${this.vad.sampleRate} Hz (resample first)`,
      );
    }
    return pcm.samples;
  }

  private samplesFor(ms: number): number {
    return Math.round((ms * this.vad.sampleRate) / 1000);
  }

  private msAt(sample: number): number {
    return this.options.originMs + (sample * 1000) / this.vad.sampleRate;
  }
}
