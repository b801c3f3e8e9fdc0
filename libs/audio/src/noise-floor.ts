import { rmsDbfs } from './pcm.js';

export interface NoiseFloorOptions {
  /** The floor is the quietest level of this much recent audio: it follows a louder room within this time. */
  windowMs: number;
  /** The floor never goes below this, so digital zero or a perfect line input cannot make a cough "speech". */
  minDbfs: number;
}

/**
 * A noise floor by minimum statistics: the quietest level seen over the last `windowMs` of audio (quieter moments
 * between words keep it near the true noise). Shared by the energy VAD and the STT's speech gate.
 */
export class NoiseFloor {
  /** Recent levels (dBFS) with the audio each covers (ms), oldest first. */
  private readonly levels: { db: number; ms: number }[] = [];
  private totalMs = 0;

  constructor(private readonly opts: NoiseFloorOptions) {}

  /** The level of `samples` in dBFS, kept a number: digital zero reads as 40 dB under the lowest floor. */
  levelOf(samples: Int16Array): number {
    return Math.max(rmsDbfs(samples), this.opts.minDbfs - 40);
  }

  /** Takes the level of the next `ms` of audio; levels older than the window drop out. */
  observe(db: number, ms: number): void {
    this.levels.push({ db, ms });
    this.totalMs += ms;
    while (this.levels.length > 1 && this.totalMs - this.levels[0]!.ms >= this.opts.windowMs) {
      this.totalMs -= this.levels.shift()!.ms;
    }
  }

  /** The floor now (dBFS): the quietest level in the window, never below `minDbfs`. */
  get dbfs(): number {
    let floor = Infinity;
    for (const level of this.levels) floor = Math.min(floor, level.db);
    return Math.max(floor, this.opts.minDbfs);
  }

  reset(): void {
    this.levels.length = 0;
    this.totalMs = 0;
  }
}
