import { NoiseFloor } from '@va/audio';
import type { AudioChunk } from '../types.js';

export interface SpeechGateOptions {
  /** Audio kept from before the gate opens, so the recogniser hears the onset and the noise before it. */
  preRollMs?: number;
  /** The gate closes after this much audio below the threshold (longer than the recogniser's own end-of-speech). */
  holdMs?: number;
  /** Opens this far above the noise floor. Lower than a VAD's threshold: opening on noise only costs a lease. */
  marginDb?: number;
  /** The floor never goes below this, so a dithered or digital-zero line cannot make a breath "speech". */
  minFloorDbfs?: number;
  /** The floor is the quietest chunk in this window: it follows a louder room within this time. */
  floorWindowMs?: number;
}

export const SPEECH_GATE_DEFAULTS = {
  preRollMs: 500,
  holdMs: 1000,
  marginDb: 9,
  minFloorDbfs: -65,
  floorWindowMs: 3000,
} satisfies Required<SpeechGateOptions>;

/**
 * Decides, chunk by chunk, when a stream holds something a recogniser should hear: opens on a chunk clearly above
 * the noise floor (handing over the pre-roll before it), stays open while there is sound and for `holdMs` after.
 * Between openings a session needs no decoder at all. Deliberately eager: a missed onset loses words, an extra
 * opening only costs a decoder lease.
 */
export class SpeechGate {
  private readonly opts: Required<SpeechGateOptions>;
  private readonly preRoll: AudioChunk[] = [];
  private preRollMs = 0;
  private readonly floor: NoiseFloor;
  private quietMs = 0;
  private isOpen = false;

  constructor(opts: SpeechGateOptions = {}) {
    this.opts = { ...SPEECH_GATE_DEFAULTS, ...opts };
    this.floor = new NoiseFloor({ windowMs: this.opts.floorWindowMs, minDbfs: this.opts.minFloorDbfs });
  }

  get open(): boolean {
    return this.isOpen;
  }

  /**
   * Takes the next chunk. Returns the chunks to hand to the recogniser now: none while closed, the pre-roll and
   * this chunk when it opens, this chunk while open. `closed` is true when this chunk closed the gate (it is the
   * last one handed over).
   */
  push(chunk: AudioChunk): { pass: AudioChunk[]; closed: boolean } {
    const ms = (chunk.samples.length * 1000) / chunk.sampleRate;
    const db = this.floor.levelOf(chunk.samples);
    const loud = db >= this.floor.dbfs + this.opts.marginDb;
    this.floor.observe(db, ms);
    if (!this.isOpen) {
      if (!loud) {
        this.keep(chunk, ms);
        return { pass: [], closed: false };
      }
      this.isOpen = true;
      this.quietMs = 0;
      const pass = [...this.preRoll, chunk];
      this.preRoll.length = 0;
      this.preRollMs = 0;
      return { pass, closed: false };
    }
    this.quietMs = loud ? 0 : this.quietMs + ms;
    if (this.quietMs < this.opts.holdMs) return { pass: [chunk], closed: false };
    this.isOpen = false;
    return { pass: [chunk], closed: true };
  }

  private keep(chunk: AudioChunk, ms: number): void {
    this.preRoll.push(chunk);
    this.preRollMs += ms;
    while (this.preRoll.length > 1 && this.preRollMs - ms >= this.opts.preRollMs) {
      const dropped = this.preRoll.shift()!;
      this.preRollMs -= (dropped.samples.length * 1000) / dropped.sampleRate;
    }
  }
}
