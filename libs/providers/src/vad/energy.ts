import { NoiseFloor } from '@va/audio';
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
  private readonly floor: NoiseFloor;
  private readonly frameMs: number;

  constructor(opts: EnergyOptions = {}) {
    this.opts = { ...DEFAULTS, ...opts };
    this.sampleRate = this.opts.sampleRate;
    this.frameSamples = this.opts.frameSamples;
    this.frameMs = (this.frameSamples * 1000) / this.sampleRate;
    this.floor = new NoiseFloor({ windowMs: this.opts.floorWindowMs, minDbfs: this.opts.minFloorDbfs });
  }

  speechProbability(frame: Int16Array): Promise<number> {
    try {
      checkFrame(this, frame);
    } catch (err) {
      return Promise.reject(err);
    }
    const { snrMidDb, snrSlopeDb } = this.opts;
    const level = this.floor.levelOf(frame);
    this.floor.observe(level, this.frameMs);
    const snr = level - this.floor.dbfs;
    return Promise.resolve(1 / (1 + Math.exp(-(snr - snrMidDb) / snrSlopeDb)));
  }

  reset(): void {
    this.floor.reset();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
