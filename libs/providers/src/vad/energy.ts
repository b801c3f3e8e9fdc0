import { rmsDbfs } from '@va/audio';
import type { VAD } from '../types.js';
import { checkFrame } from './frame.js';

export interface EnergyOptions {
  sampleRate?: number;
  /** 20 ms at 16 kHz. */
  frameSamples?: number;
  /** How far above the noise floor a frame is half-likely speech. */
  snrMidDb?: number;
  /** Width of the dB → probability sigmoid. */
  snrSlopeDb?: number;
  /** The floor never goes below this, so digital zero or a perfect line input cannot make a cough "speech". */
  minFloorDbfs?: number;
  /** The floor is the quietest frame seen in this window: it follows rising noise within this time. */
  floorWindowMs?: number;
}

const DEFAULTS = {
  sampleRate: 16000,
  frameSamples: 320,
  snrMidDb: 12,
  snrSlopeDb: 3,
  minFloorDbfs: -65,
  floorWindowMs: 3000,
} satisfies Required<EnergyOptions>;

/**
 * Dependency-free fallback VAD: frame level against a noise floor estimate (minimum statistics over a few
 * seconds; quieter frames between words keep it near the true noise, and it follows louder rooms within one
 * window). Cheap and predictable, but anything loud counts as speech — prefer Silero.
 */
export class EnergyVAD implements VAD {
  readonly provider = 'energy';
  readonly sampleRate: number;
  readonly frameSamples: number;
  private readonly opts: Required<EnergyOptions>;
  /** Ring of recent frame levels (dBFS) for the minimum. */
  private readonly levels: Float64Array;
  private count = 0;

  constructor(opts: EnergyOptions = {}) {
    this.opts = { ...DEFAULTS, ...opts };
    this.sampleRate = this.opts.sampleRate;
    this.frameSamples = this.opts.frameSamples;
    const frameMs = (this.frameSamples * 1000) / this.sampleRate;
    this.levels = new Float64Array(Math.max(1, Math.round(this.opts.floorWindowMs / frameMs)));
  }

  speechProbability(frame: Int16Array): Promise<number> {
    try {
      checkFrame(this, frame);
    } catch (err) {
      return Promise.reject(err);
    }
    const { snrMidDb, snrSlopeDb, minFloorDbfs } = this.opts;
    // Clamp so digital zero (−Infinity) stays a number in the ring.
    const level = Math.max(rmsDbfs(frame), minFloorDbfs - 40);
    this.levels[this.count++ % this.levels.length] = level;
    let floor = Infinity;
    for (let i = 0; i < Math.min(this.count, this.levels.length); i++) floor = Math.min(floor, this.levels[i]!);
    const snr = level - Math.max(floor, minFloorDbfs);
    return Promise.resolve(1 / (1 + Math.exp(-(snr - snrMidDb) / snrSlopeDb)));
  }

  reset(): void {
    this.count = 0;
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
