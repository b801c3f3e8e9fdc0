import { rmsDbfs } from '@va/audio';
import type { VAD } from '../types.js';
import { checkFrame } from './frame.js';

/** What a script sees for each frame. */
export interface FakeFrame {
  /** Start of the frame, ms since construction or the last reset(). */
  atMs: number;
  dbfs: number;
  samples: Int16Array;
}

export interface FakeVADOptions {
  sampleRate?: number;
  frameSamples?: number;
  /** Speech probability per frame. Default: 0.9 above −40 dBFS, else 0.05. */
  script?: (frame: FakeFrame) => number;
}

/** Deterministic VAD for tests: a scripted function of time or of frame energy. */
export class FakeVAD implements VAD {
  readonly provider = 'fake';
  readonly sampleRate: number;
  readonly frameSamples: number;
  private readonly script: (frame: FakeFrame) => number;
  private frames = 0;

  constructor(opts: FakeVADOptions = {}) {
    this.sampleRate = opts.sampleRate ?? 16000;
    this.frameSamples = opts.frameSamples ?? 320;
    this.script = opts.script ?? (({ dbfs }) => (dbfs > -40 ? 0.9 : 0.05));
  }

  /** Scripted by time: `high` inside any of the [startMs, endMs) spans, `low` elsewhere. */
  static speechBetween(spans: ReadonlyArray<readonly [number, number]>, high = 0.9, low = 0.05) {
    return ({ atMs }: FakeFrame) => (spans.some(([a, b]) => atMs >= a && atMs < b) ? high : low);
  }

  speechProbability(frame: Int16Array): Promise<number> {
    try {
      checkFrame(this, frame);
      const atMs = (this.frames++ * this.frameSamples * 1000) / this.sampleRate;
      const p = this.script({ atMs, dbfs: rmsDbfs(frame), samples: frame });
      return Promise.resolve(Math.min(1, Math.max(0, p)));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  reset(): void {
    this.frames = 0;
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
