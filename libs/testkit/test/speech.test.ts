import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { durationMs, rmsDbfs } from '@va/audio';
import { speak, utterances, wordAccuracy } from '../src/index.js';

describe('speak', () => {
  it('synthesizes audible speech of a plausible length at 16 kHz', async () => {
    const pcm = await speak('the weather is nice today');
    expect(pcm.sampleRate).toBe(16000);
    // Five words of flite: about 1.5–2 s.
    expect(durationMs(pcm)).toBeGreaterThan(1000);
    expect(durationMs(pcm)).toBeLessThan(3500);
    expect(rmsDbfs(pcm.samples)).toBeGreaterThan(-35);
  });

  it('longer text gives longer speech', async () => {
    const short = await speak('hello');
    const long = await speak('hello there, I would like to book a table for two people tonight');
    expect(durationMs(long)).toBeGreaterThan(2 * durationMs(short));
  });

  it('resamples to the rate asked for, keeping the duration', async () => {
    const at16 = await speak('what time is it');
    const at48 = await speak('what time is it', { sampleRate: 48000 });
    expect(at48.sampleRate).toBe(48000);
    expect(Math.abs(durationMs(at48) - durationMs(at16))).toBeLessThan(5);
    // kal is an 8 kHz voice: returned at the default 16 kHz all the same.
    const kal = await speak('what time is it', { voice: 'kal' });
    expect(kal.sampleRate).toBe(16000);
    expect(durationMs(kal)).toBeGreaterThan(500);
  });

  it('says clearly when flite is missing', async () => {
    const emptyDir = mkdtempSync(path.join(tmpdir(), 'no-flite-'));
    const savedPath = process.env.PATH;
    process.env.PATH = emptyDir;
    try {
      await expect(speak('hello')).rejects.toThrow(/flite.*not installed/);
    } finally {
      process.env.PATH = savedPath;
      rmSync(emptyDir, { recursive: true, force: true });
    }
  });
});

describe('utterances', () => {
  it('is the speech plus the pauses, dithered so that no 10 ms is digital zero', async () => {
    const a = await speak('the weather is nice today');
    const b = await speak('what time is it');
    const pcm = await utterances([
      { say: '', pauseMs: 500 },
      { say: 'the weather is nice today', pauseMs: 1000 },
      { say: 'what time is it', pauseMs: 300 },
    ]);
    expect(pcm.sampleRate).toBe(16000);
    expect(durationMs(pcm)).toBeCloseTo(500 + durationMs(a) + 1000 + durationMs(b) + 300, 0);

    const win = 160;
    for (let i = 0; i + win <= pcm.samples.length; i += win) {
      expect(rmsDbfs(pcm.samples.subarray(i, i + win)), `10 ms window at ${i / 16} ms`).toBeGreaterThan(-Infinity);
    }
    // The lead-in pause is quiet, the speech is not.
    expect(rmsDbfs(pcm.samples.subarray(0, 8000))).toBeLessThan(-70);
    expect(rmsDbfs(pcm.samples.subarray(8000, 8000 + a.samples.length))).toBeGreaterThan(-35);
  });

  it('honours the sample rate', async () => {
    const pcm = await utterances([{ say: 'hello', pauseMs: 200 }], { sampleRate: 8000 });
    expect(pcm.sampleRate).toBe(8000);
    expect(durationMs(pcm)).toBeGreaterThan(200);
  });
});

describe('wordAccuracy', () => {
  it('is 1 for the same words, ignoring case and punctuation', () => {
    expect(wordAccuracy('The weather is nice today.', 'the weather is nice today')).toBe(1);
    expect(wordAccuracy("What's up, doc?", 'whats up doc')).toBe(1);
  });

  it('counts substitutions, deletions and insertions against the reference length', () => {
    expect(wordAccuracy('the weather is nice today', 'the weather is nice to day')).toBeCloseTo(0.6); // 1 sub + 1 ins
    expect(wordAccuracy('please book a table for two', 'please at the table for two')).toBeCloseTo(4 / 6);
    expect(wordAccuracy('one two three four', 'one three four')).toBeCloseTo(0.75);
    expect(wordAccuracy('one two three four', 'one two three four five')).toBeCloseTo(0.75);
  });

  it('is floored at 0 and handles empty text', () => {
    expect(wordAccuracy('yes', 'no no no no')).toBe(0);
    expect(wordAccuracy('hello there', '')).toBe(0);
    expect(wordAccuracy('', '')).toBe(1);
    expect(wordAccuracy('', 'noise')).toBe(0);
  });
});
