import { PitchDetector } from 'pitchy';

/**
 * How the speech before a pause ended, from its audio: speakers who are done let their pitch fall, lengthen the
 * last syllable and fade out; mid-sentence they hold the pitch level or raise it and stop short.
 */
export interface Prosody {
  /** Pitch movement over the last ~300 ms of voicing, semitones per second (a final fall is negative). */
  pitchSlope: number;
  /** Pitch of the last ~150 ms of voicing against the median of the whole stretch, semitones. */
  finalPitch: number;
  /** Pitch of the last ~150 ms of voicing above the low end (10th percentile) of the stretch: ~0 at a final fall. */
  aboveFloor: number;
  /** Pitch movement over the last ~150 ms of voicing alone, semitones per second (a continuation rise is positive). */
  lastSlope: number;
  /** Length of the last voiced run (the final syllable's vowel, mostly), ms. */
  finalVoicedMs: number;
  /** The last voiced run against the median voiced run of the stretch: final lengthening, whatever the rate. */
  finalRunRatio: number;
  /** Loudness of the last 100 ms of speech under the loudest frame, dB (≤ 0). */
  finalLevel: number;
  /** Loudness change over the last 200 ms of speech, dB per second (a fade is negative; a cut stays flat). */
  energySlope: number;
  /** Share of the last 200 ms that is voiced. */
  voicedShare: number;
  /**
   * Where the pitch was, semitones over 100 Hz (unset when nothing was voiced): the stretch's median and low end,
   * and the last ~150 ms of voicing (unset when it ended unvoiced). A speaker's own range is learnt from these.
   */
  pitchSt?: { median: number; floor: number; final?: number };
}

/** The speech right before a pause: PCM16 mono that ends where the speech stopped, up to ~1.5 s of it. */
export interface SpeechTail {
  samples: Int16Array;
  sampleRate: number;
  /** The speaker's pitch range so far (one per session): the model reads it, and learns this tail into it. */
  speaker?: SpeakerPitch;
}

/** Audio the prosody reads: the last this-many ms before the speech stopped. */
export const PROSODY_WINDOW_MS = 1500;
const FRAME_S = 0.032;
const HOP_MS = 10;
/** A frame is voiced when the detector is this sure of a pitch in the human range. */
const MIN_CLARITY = 0.7;
const MIN_HZ = 60;
const MAX_HZ = 450;
/** Below this (dB relative to the loudest frame) a frame is not speech at all. */
const QUIET_DB = -35;

interface Frame {
  atMs: number;
  db: number;
  /** Semitones relative to 100 Hz, or undefined when unvoiced. */
  st: number | undefined;
}

const detectors = new Map<number, PitchDetector<Float32Array>>();

function detectorFor(length: number): PitchDetector<Float32Array> {
  let d = detectors.get(length);
  if (!d) {
    d = PitchDetector.forFloat32Array(length);
    detectors.set(length, d);
  }
  return d;
}

function analyse(tail: SpeechTail): Frame[] {
  const { samples, sampleRate } = tail;
  const size = Math.round(FRAME_S * sampleRate);
  const hop = Math.round((HOP_MS / 1000) * sampleRate);
  const detector = detectorFor(size);
  const buf = new Float32Array(size);
  const frames: Frame[] = [];
  for (let start = 0; start + size <= samples.length; start += hop) {
    let energy = 0;
    for (let i = 0; i < size; i++) {
      const v = samples[start + i]! / 32768;
      buf[i] = v;
      energy += v * v;
    }
    const db = 10 * Math.log10(energy / size + 1e-12);
    const [hz, clarity] = detector.findPitch(buf, sampleRate);
    const voiced = clarity >= MIN_CLARITY && hz >= MIN_HZ && hz <= MAX_HZ;
    frames.push({
      atMs: ((start + size / 2) / sampleRate) * 1000,
      db,
      st: voiced ? 12 * Math.log2(hz / 100) : undefined,
    });
  }
  return frames;
}

/** Least-squares slope of y over x; 0 with fewer than 3 points. */
function slope(points: readonly [number, number][]): number {
  if (points.length < 3) return 0;
  const n = points.length;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) * (x - mx);
  }
  return den === 0 ? 0 : num / den;
}

function quantile(values: number[], q: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))]!;
}

const median = (values: number[]) => quantile(values, 0.5);

/** Prosody with nothing heard: every feature at its neutral value. */
export const NO_PROSODY: Prosody = {
  pitchSlope: 0,
  finalPitch: 0,
  aboveFloor: 0,
  lastSlope: 0,
  finalVoicedMs: 0,
  finalRunRatio: 0,
  finalLevel: 0,
  energySlope: 0,
  voicedShare: 0,
};

/** Reads the prosody of the speech before a pause (a few ms of CPU for 1.5 s of audio). */
export function prosodyOf(tail: SpeechTail): Prosody {
  const all = analyse(tail);
  if (all.length === 0) return NO_PROSODY;
  const peak = Math.max(...all.map((f) => f.db));
  // Trailing frames below the speech level are the start of the pause, not speech: measure up to the last loud one.
  let last = all.length - 1;
  while (last > 0 && all[last]!.db < peak + QUIET_DB) last--;
  const frames = all.slice(0, last + 1).filter((f) => f.db >= peak + QUIET_DB);
  const endMs = all[last]!.atMs;
  const voiced = frames.filter((f) => f.st !== undefined) as (Frame & { st: number })[];
  const within = (ms: number) => voiced.filter((f) => f.atMs >= endMs - ms);
  const lastVoiced = within(300);
  const finalSt = within(150).map((f) => f.st);
  const allSt = voiced.map((f) => f.st);
  // Voiced runs (syllable nuclei, roughly); the last one past any unvoiced ending (a final "s" or "t").
  const runs: number[] = [];
  let current = 0;
  for (const f of frames) {
    if (f.st !== undefined) current++;
    else if (current > 0) {
      runs.push(current);
      current = 0;
    }
  }
  if (current > 0) runs.push(current);
  const run = runs[runs.length - 1] ?? 0;
  const lastLoud = frames.filter((f) => f.atMs >= endMs - 100).map((f) => f.db);
  const recent = frames.filter((f) => f.atMs >= endMs - 200);
  return {
    pitchSlope: slope(lastVoiced.map((f) => [f.atMs / 1000, f.st])),
    finalPitch: finalSt.length > 0 ? median(finalSt) - median(allSt) : 0,
    aboveFloor: finalSt.length > 0 ? median(finalSt) - quantile(allSt, 0.1) : 0,
    lastSlope: slope(within(150).map((f) => [f.atMs / 1000, f.st])),
    finalVoicedMs: run * HOP_MS,
    finalRunRatio: runs.length > 1 ? run / median(runs) : run > 0 ? 1 : 0,
    finalLevel: lastLoud.length > 0 ? median(lastLoud) - peak : 0,
    energySlope: slope(recent.map((f) => [f.atMs / 1000, f.db])),
    voicedShare: recent.length > 0 ? recent.filter((f) => f.st !== undefined).length / recent.length : 0,
    ...(allSt.length > 0
      ? {
          pitchSt: {
            median: median(allSt),
            floor: quantile(allSt, 0.1),
            ...(finalSt.length > 0 ? { final: median(finalSt) } : {}),
          },
        }
      : {}),
  };
}

/** Pitch stretches a speaker's range is taken from: the latest this-many, and at least a few. */
const SPEAKER_HISTORY = 40;
const SPEAKER_MIN_HISTORY = 3;

/**
 * One speaker's pitch range, learnt over a session from the speech before each pause: a fall to the speaker's own
 * floor is a finished sentence far more surely than a fall within 1.5 s of audio (voices differ by an octave).
 */
export class SpeakerPitch {
  private readonly medians: number[] = [];
  private readonly floors: number[] = [];

  /** The range to judge `p` against: the speaker's (medians of the past stretches), else the stretch's own. */
  range(p: Prosody): { median: number; floor: number } | undefined {
    if (this.medians.length >= SPEAKER_MIN_HISTORY) return { median: median(this.medians), floor: median(this.floors) };
    return p.pitchSt && { median: p.pitchSt.median, floor: p.pitchSt.floor };
  }

  learn(p: Prosody): void {
    if (!p.pitchSt) return;
    this.medians.push(p.pitchSt.median);
    this.floors.push(p.pitchSt.floor);
    if (this.medians.length > SPEAKER_HISTORY) {
      this.medians.shift();
      this.floors.shift();
    }
  }
}
