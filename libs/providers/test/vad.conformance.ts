import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { concat, dither, Framer, readWav, rmsDbfs, silence, type Pcm } from '@va/audio';
import { SpeechSegmenter, type SegmentEvent } from '../src/vad/index.js';
import type { VAD } from '../src/types.js';

const RATE = 16000;

/** Speech from the Debian `flite` binary (voice slt, 16 kHz mono). */
export function speak(text: string): Pcm {
  const dir = mkdtempSync(path.join(tmpdir(), 'vad-flite-'));
  try {
    const file = path.join(dir, 'speech.wav');
    execFileSync('flite', ['-voice', 'slt', '-t', text, '-o', file]);
    const pcm = readWav(readFileSync(file));
    if (pcm.sampleRate !== RATE) throw new Error(`flite produced ${pcm.sampleRate} Hz, expected ${RATE}`);
    return pcm;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Cuts flite's quiet lead-in and tail: the true speech edges are the first and last 10 ms windows within
 * 30 dB of the loudest, so after trimming a clip's speech spans exactly [0, its length).
 */
export function trimToSpeech(pcm: Pcm): Pcm {
  const win = RATE / 100;
  const levels: number[] = [];
  for (let i = 0; i + win <= pcm.samples.length; i += win) levels.push(rmsDbfs(pcm.samples.subarray(i, i + win)));
  const gate = Math.max(...levels) - 30;
  const first = levels.findIndex((l) => l > gate);
  const last = levels.findLastIndex((l) => l > gate);
  if (first < 0) throw new Error('no speech found');
  return { samples: pcm.samples.slice(first * win, (last + 1) * win), sampleRate: pcm.sampleRate };
}

const ms = (pcm: Pcm) => (pcm.samples.length * 1000) / pcm.sampleRate;

/** Whole frames only; the tail that does not fill a frame is dropped. */
async function probabilities(vad: VAD, samples: Int16Array): Promise<number[]> {
  const out: number[] = [];
  for (const frame of new Framer(vad.frameSamples).push(samples)) out.push(await vad.speechProbability(frame));
  return out;
}

export interface VadConformanceOptions {
  /** Share of loud speech frames that must score ≥ 0.5. */
  speechFraction?: number;
  /** Highest probability any silence frame may get. */
  maxSilenceProbability?: number;
  /** Allowed error of segment boundaries, ms. */
  boundaryToleranceMs?: number;
  /** Scores each frame alone (an energy threshold): what was heard before must change nothing, reset() included. */
  stateless?: boolean;
}

/** The behaviour every VAD provider must show. `make` returns a fresh instance; each is closed after its test. */
export function describeVadConformance(
  name: string,
  make: () => VAD | Promise<VAD>,
  opts: VadConformanceOptions = {},
): void {
  const { speechFraction = 0.8, maxSilenceProbability = 0.2, boundaryToleranceMs = 150 } = opts;

  describe(`VAD conformance: ${name}`, () => {
    let speechA: Pcm;
    let speechB: Pcm;
    const open: VAD[] = [];
    const fresh = async () => {
      const vad = await make();
      open.push(vad);
      return vad;
    };

    beforeAll(() => {
      speechA = trimToSpeech(speak('Hello there, how are you doing today?'));
      speechB = trimToSpeech(speak('I would like to book a table for two.'));
    });
    afterAll(async () => {
      await Promise.all(open.map((v) => v.close()));
    });

    it('declares its frame geometry', async () => {
      const vad = await fresh();
      expect(vad.provider).toBe(name);
      expect(vad.sampleRate).toBe(RATE);
      expect(vad.frameSamples).toBeGreaterThan(0);
    });

    it('gives low probability to dithered silence and to digital zero', async () => {
      for (const samples of [dither(silence(2000, RATE).samples), silence(2000, RATE).samples]) {
        const vad = await fresh();
        const ps = await probabilities(vad, samples);
        expect(ps.length).toBeGreaterThan(10);
        expect(Math.max(...ps)).toBeLessThan(maxSilenceProbability);
      }
    });

    it('gives high probability on most speech frames', async () => {
      const vad = await fresh();
      const lead = dither(silence(500, RATE).samples);
      const ps = await probabilities(vad, concat([{ samples: lead, sampleRate: RATE }, speechA]).samples);
      // Judge only frames that are clearly speech (loud), skipping the lead-in.
      const frames = new Framer(vad.frameSamples).push(speechA.samples);
      const speechPs = ps.slice(ps.length - frames.length).filter((_, i) => rmsDbfs(frames[i]!) > -30);
      expect(speechPs.length).toBeGreaterThan(10);
      const high = speechPs.filter((p) => p >= 0.5).length;
      expect(high / speechPs.length).toBeGreaterThanOrEqual(speechFraction);
    });

    it('keeps probabilities within 0..1 on extreme input', async () => {
      const vad = await fresh();
      let x = 7;
      const noise = Int16Array.from({ length: RATE }, () => ((x = (x * 1103515245 + 12345) >>> 0) % 65536) - 32768);
      const square = Int16Array.from({ length: RATE }, (_, i) => (i % 40 < 20 ? 32767 : -32768));
      const ps = await probabilities(
        vad,
        concat([speechA, { samples: noise, sampleRate: RATE }, { samples: square, sampleRate: RATE }]).samples,
      );
      expect(ps.length).toBeGreaterThan(10);
      for (const p of ps) {
        expect(Number.isFinite(p)).toBe(true);
        expect(p).toBeGreaterThanOrEqual(0);
        expect(p).toBeLessThanOrEqual(1);
      }
    });

    it('reset() forgets everything heard before', async () => {
      // Silence then speech leaves state behind; the loud middle of speech B is scored differently with it.
      const history = concat([{ samples: dither(silence(1000, RATE).samples), sampleRate: RATE }, speechA]).samples;
      const probe = speechB.samples.subarray(0, RATE / 2);
      const baseline = await probabilities(await fresh(), probe);

      const vad = await fresh();
      await probabilities(vad, history);
      const withHistory = await probabilities(vad, probe);
      // Otherwise this test could not tell a working reset() from a missing one; a stateless VAD must not differ.
      if (opts.stateless) expect(withHistory).toEqual(baseline);
      else expect(withHistory).not.toEqual(baseline);

      await probabilities(vad, history);
      vad.reset();
      const afterReset = await probabilities(vad, probe);
      expect(afterReset.length).toBe(baseline.length);
      afterReset.forEach((p, i) => expect(p).toBeCloseTo(baseline[i]!, 5));
    });

    it('rejects a frame of the wrong length with a clear error, and keeps working', async () => {
      const vad = await fresh();
      const n = vad.frameSamples;
      const msg = new RegExp(`frame must be ${n} samples.*got ${n - 1}`);
      await expect(vad.speechProbability(new Int16Array(n - 1))).rejects.toThrow(msg);
      await expect(vad.speechProbability(new Int16Array(n + 1))).rejects.toThrow(/frame must be/);
      await expect(vad.speechProbability(new Int16Array(0))).rejects.toThrow(/frame must be/);
      const p = await vad.speechProbability(new Int16Array(n));
      expect(p).toBeGreaterThanOrEqual(0);
    });

    it('segments speech, 1 s of silence, speech into start,end,start,end at the true boundaries', async () => {
      const vad = await fresh();
      const quiet = (msLen: number, seed: number): Pcm => ({
        samples: dither(silence(msLen, RATE).samples, 4, seed),
        sampleRate: RATE,
      });
      const parts = [quiet(600, 1), speechA, quiet(1000, 2), speechB, quiet(800, 3)];
      const audio = concat(parts);
      const a0 = ms(parts[0]!);
      const truth = [a0, a0 + ms(speechA), a0 + ms(speechA) + 1000, a0 + ms(speechA) + 1000 + ms(speechB)];

      const seg = new SpeechSegmenter(vad);
      const events: SegmentEvent[] = [];
      // Odd chunk sizes: the segmenter re-frames whatever it is given.
      for (let i = 0; i < audio.samples.length; i += 333) {
        events.push(...(await seg.push(audio.samples.subarray(i, i + 333))));
      }
      events.push(...(await seg.finish()));

      expect(events.map((e) => e.kind)).toEqual(['start', 'end', 'start', 'end']);
      events.forEach((e, i) =>
        expect(Math.abs(e.atMs - truth[i]!), `${e.kind} ${i}`).toBeLessThanOrEqual(boundaryToleranceMs),
      );
    });
  });
}
