import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { concat, dither, readWav, resample, silence, type Pcm } from '@va/audio';

export interface SpeakOptions {
  /** A flite voice: slt (default), kal, kal16, awb, rms. */
  voice?: string;
  /** Rate of the returned audio; flite's output is resampled to it. Default 16000. */
  sampleRate?: number;
}

/** Test speech from the Debian `flite` binary: mono PCM16. */
export async function speak(text: string, opts: SpeakOptions = {}): Promise<Pcm> {
  const { voice = 'slt', sampleRate = 16000 } = opts;
  const dir = await mkdtemp(path.join(tmpdir(), 'va-speak-'));
  try {
    const file = path.join(dir, 'speech.wav');
    try {
      await promisify(execFile)('flite', ['-voice', voice, '-t', text, '-o', file]);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new Error('speak: the `flite` binary is not installed (apt-get install flite)');
      }
      throw new Error(`speak: flite failed: ${(err as Error).message}`);
    }
    return await resample(readWav(await readFile(file)), sampleRate);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export interface Turn {
  say: string;
  /** Silence after the speech, ms. A turn with `say: ''` is a pause only (e.g. a lead-in). */
  pauseMs: number;
}

/** Peak of the triangular dither laid over utterances(): about −80 dBFS, far below speech, never digital zero. */
const DITHER = 4;

/**
 * A conversation's user side: each turn's speech followed by its pause, with light dither over all of it, so
 * no stretch is digital zero (real microphones never produce it, and recognisers' normalisers dislike it).
 */
export async function utterances(turns: readonly Turn[], opts: SpeakOptions = {}): Promise<Pcm> {
  const sampleRate = opts.sampleRate ?? 16000;
  const parts: Pcm[] = [];
  for (const { say, pauseMs } of turns) {
    if (say.trim() !== '') parts.push(await speak(say, { ...opts, sampleRate }));
    parts.push(silence(pauseMs, sampleRate));
  }
  const joined = concat(parts, sampleRate);
  return { samples: dither(joined.samples, DITHER, 1), sampleRate };
}

/** Lower-cased words; apostrophes vanish ("what's" = "whats"), other punctuation separates words. */
function words(text: string): string[] {
  return text
    .toLowerCase()
    .replace(/['’]/g, '')
    .replace(/[^\p{L}\p{N}]+/gu, ' ')
    .split(' ')
    .filter(Boolean);
}

/** 1 − word error rate (Levenshtein distance over words / reference length), floored at 0. */
export function wordAccuracy(reference: string, hypothesis: string): number {
  const ref = words(reference);
  const hyp = words(hypothesis);
  if (ref.length === 0) return hyp.length === 0 ? 1 : 0;
  // One row of the edit-distance table at a time.
  let prev = Array.from({ length: hyp.length + 1 }, (_, j) => j);
  for (let i = 1; i <= ref.length; i++) {
    const row = [i];
    for (let j = 1; j <= hyp.length; j++) {
      const substitution = prev[j - 1]! + (ref[i - 1] === hyp[j - 1] ? 0 : 1);
      row.push(Math.min(substitution, prev[j]! + 1, row[j - 1]! + 1));
    }
    prev = row;
  }
  return Math.max(0, 1 - prev[hyp.length]! / ref.length);
}
