import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { durationMs, rmsDbfs } from '@va/audio';
import {
  EOT_VOICES,
  formatSpeakerVoice,
  parseSpeakerVoices,
  speakMarked,
  type MarkedUtterance,
  type SpeakerVoice,
} from '../src/index.js';

const TEXT = 'i would like a table for two on | friday evening';
const BEFORE = 'i would like a table for two on';
const LEAD_MS = 400;
const TAIL_MS = 700;

const slt: SpeakerVoice = { engine: 'flite', voice: 'slt', rate: 1 };
const kal: SpeakerVoice = { engine: 'flite', voice: 'kal', rate: 1 };
const enUs: SpeakerVoice = { engine: 'espeak-ng', voice: 'en-us', rate: 1 };

const between = (u: MarkedUtterance, fromMs: number, toMs: number) =>
  u.pcm.samples.subarray(Math.round(fromMs * 16), Math.round(toMs * 16));

/** What every utterance must satisfy, whatever the engine and style. */
function expectWellFormed(u: MarkedUtterance, pausesMs: readonly number[]): void {
  expect(u.pcm.sampleRate).toBe(16000);
  expect(u.pauses).toHaveLength(pausesMs.length);
  let previousEnd = u.speechStartMs;
  u.pauses.forEach((p, i) => {
    const length = p.endMs - p.startMs;
    expect(Math.abs(length - pausesMs[i]!), `pause ${i} measured ${length} ms`).toBeLessThan(150);
    expect(p.startMs).toBeGreaterThan(previousEnd);
    expect(p.endMs).toBeLessThan(u.speechEndMs);
    previousEnd = p.endMs;
    // Measured, not assumed: quiet inside, speech just before and just after.
    const inside = rmsDbfs(between(u, p.startMs + 50, p.endMs - 50));
    expect(inside).toBeLessThan(-60);
    expect(rmsDbfs(between(u, p.startMs - 50, p.startMs))).toBeGreaterThan(inside + 20);
    expect(rmsDbfs(between(u, p.endMs, p.endMs + 50))).toBeGreaterThan(inside + 20);
  });

  // The lead and tail are quiet, and the whole is lead + speech (its pauses included) + tail, give or take the
  // few ms the engine's own quiet is kept around the speech.
  expect(u.speechStartMs).toBeGreaterThanOrEqual(LEAD_MS);
  expect(u.speechStartMs - LEAD_MS).toBeLessThan(60);
  expect(rmsDbfs(between(u, 0, LEAD_MS))).toBeLessThan(-70);
  expect(rmsDbfs(between(u, u.speechEndMs + 50, durationMs(u.pcm)))).toBeLessThan(-70);
  const extra = durationMs(u.pcm) - (LEAD_MS + (u.speechEndMs - u.speechStartMs) + TAIL_MS);
  expect(extra).toBeGreaterThanOrEqual(0);
  expect(extra).toBeLessThan(80);

  // Dithered: no 10 ms is digital zero.
  for (let i = 0; i + 160 <= u.pcm.samples.length; i += 160) {
    expect(rmsDbfs(u.pcm.samples.subarray(i, i + 160)), `10 ms at ${i / 16} ms`).toBeGreaterThan(-Infinity);
  }
}

describe('speakMarked', () => {
  it.each([
    ['flite slt, phrase break', slt, 'phrase', 'phrase'],
    ['flite kal, cut', kal, 'cut', 'cut'],
    ['espeak-ng en-us, phrase break', enUs, 'phrase', 'phrase'],
    // espeak-ng gives no phone timings to cut at.
    ['espeak-ng en-us, cut falls back to a phrase break', enUs, 'cut', 'phrase'],
  ] as const)('%s: one 800 ms pause, measured where it was put', async (_, voice, style, used) => {
    const u = await speakMarked(TEXT, [800], voice, { styles: [style], leadMs: LEAD_MS, tailMs: TAIL_MS });
    expectWellFormed(u, [800]);
    const [pause] = u.pauses;
    expect(pause!.wordsBefore).toBe(BEFORE);
    expect(pause!.style).toBe(used);
    // Nine words either side of the pause: 1.5–3.5 s of speech.
    const speaking = u.speechEndMs - u.speechStartMs - (pause!.endMs - pause!.startMs);
    expect(speaking).toBeGreaterThan(1500);
    expect(speaking).toBeLessThan(3500);
    // More than a word on either side of the pause.
    expect(pause!.startMs - u.speechStartMs).toBeGreaterThan(800);
    expect(u.speechEndMs - pause!.endMs).toBeGreaterThan(400);
  });

  it('a faster rate gives shorter speech', async () => {
    const speaking = (u: MarkedUtterance) =>
      u.speechEndMs - u.speechStartMs - u.pauses.reduce((n, p) => n + p.endMs - p.startMs, 0);
    for (const voice of [slt, enUs]) {
      const normal = await speakMarked(TEXT, [800], voice, { leadMs: LEAD_MS, tailMs: TAIL_MS });
      const fast = await speakMarked(TEXT, [800], { ...voice, rate: 1.4 }, { leadMs: LEAD_MS, tailMs: TAIL_MS });
      expect(speaking(fast), formatSpeakerVoice(voice)).toBeLessThan(speaking(normal) * 0.85);
    }
  });

  it.each([
    ['flite slt', slt],
    ['espeak-ng en-us', enUs],
  ] as const)('%s: two pauses of different lengths, in order', async (_, voice) => {
    const u = await speakMarked('can you book | a flight to boston | tomorrow morning', [400, 1200], voice, {
      styles: ['cut', 'phrase'],
      leadMs: LEAD_MS,
      tailMs: TAIL_MS,
    });
    expectWellFormed(u, [400, 1200]);
    expect(u.pauses.map((p) => p.wordsBefore)).toEqual(['can you book', 'can you book a flight to boston']);
    expect(u.pauses.map((p) => p.style)).toEqual(voice.engine === 'flite' ? ['cut', 'phrase'] : ['phrase', 'phrase']);
  });

  it('rejects markers and pause lengths that do not match', async () => {
    await expect(speakMarked(TEXT, [], slt)).rejects.toThrow(/1 \| markers but 0 pause lengths/);
    await expect(speakMarked(TEXT, [800, 800], slt)).rejects.toThrow(/1 \| markers but 2 pause lengths/);
    await expect(speakMarked('no markers here', [500], enUs)).rejects.toThrow(/0 \| markers but 1/);
    await expect(speakMarked(TEXT, [800], slt, { styles: [] })).rejects.toThrow(/0 pause styles/);
    await expect(speakMarked('| friday evening', [800], slt)).rejects.toThrow(/words on both sides/);
    await expect(speakMarked(TEXT, [100], slt)).rejects.toThrow(/shorter than the 150 ms/);
  });

  it('rejects a flite voice flite does not have (flite itself would quietly use another)', async () => {
    await expect(speakMarked(TEXT, [800], { engine: 'flite', voice: 'nope', rate: 1 })).rejects.toThrow(
      /flite has no voice "nope"/,
    );
    await expect(speakMarked(TEXT, [800], { engine: 'espeak-ng', voice: 'nope', rate: 1 })).rejects.toThrow(
      /espeak-ng failed/,
    );
  });

  it('names the Debian package when a binary is missing', async () => {
    const emptyDir = mkdtempSync(path.join(tmpdir(), 'no-tts-'));
    const savedPath = process.env.PATH;
    process.env.PATH = emptyDir;
    try {
      await expect(speakMarked(TEXT, [800], kal)).rejects.toThrow(/`flite` binary is not installed.*install flite/);
      await expect(speakMarked(TEXT, [800], enUs)).rejects.toThrow(
        /`espeak-ng` binary is not installed.*install espeak-ng/,
      );
    } finally {
      process.env.PATH = savedPath;
      rmSync(emptyDir, { recursive: true, force: true });
    }
  });
});

describe('parseSpeakerVoices', () => {
  it('parses engines, voices and rates (1 by default)', () => {
    expect(parseSpeakerVoices('flite:kal,flite:slt@1.15, espeak-ng:en-us@0.9')).toEqual([
      { engine: 'flite', voice: 'kal', rate: 1 },
      { engine: 'flite', voice: 'slt', rate: 1.15 },
      { engine: 'espeak-ng', voice: 'en-us', rate: 0.9 },
    ]);
    expect(formatSpeakerVoice({ engine: 'flite', voice: 'slt', rate: 1.15 })).toBe('flite:slt@1.15');
    expect(formatSpeakerVoice({ engine: 'flite', voice: 'kal', rate: 1 })).toBe('flite:kal');
  });

  it.each(['nope:x', 'flite:slt@0', 'flite:slt@-1', 'flite:slt@fast', 'flite', 'flite:', ':slt', ''])(
    'rejects %j',
    (spec) => {
      expect(() => parseSpeakerVoices(spec)).toThrow(/parseSpeakerVoices: (bad voice|no voices)/);
    },
  );

  it('names the bad entry', () => {
    expect(() => parseSpeakerVoices('flite:kal,nope:x')).toThrow(/"nope:x".*engine must be one of flite, espeak-ng/);
  });

  it('EOT_VOICES: every installed voice family, at more than one rate', () => {
    const names = EOT_VOICES.map((v) => `${v.engine}:${v.voice}`);
    expect(names).toEqual(
      expect.arrayContaining([
        'flite:kal',
        'flite:awb',
        'flite:rms',
        'flite:slt',
        'espeak-ng:en-us',
        'espeak-ng:en-gb',
      ]),
    );
    expect(new Set(EOT_VOICES.map((v) => v.rate)).size).toBeGreaterThan(1);
    // The format round-trips, so a CLI can print the default set for editing.
    expect(parseSpeakerVoices(EOT_VOICES.map(formatSpeakerVoice).join(','))).toEqual([...EOT_VOICES]);
  });
});
