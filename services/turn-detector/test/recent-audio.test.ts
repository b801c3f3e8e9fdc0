import { describe, expect, it } from 'vitest';
import { PROSODY_WINDOW_MS } from '@va/providers';
import { RecentAudio } from '../src/recent-audio.js';

/** A 20 ms frame at 16 kHz whose samples count the frame's index, so a copy shows which audio it holds. */
const frame = (i: number) => new Int16Array(320).fill(i);

describe('the recent microphone audio a listening end-of-utterance model reads', () => {
  it('gives the audio before a point, up to the prosody window', () => {
    const audio = new RecentAudio();
    for (let i = 0; i < 200; i++) audio.push(i * 20, frame(i), 16000); // 4 s
    const tail = audio.before(3800)!;
    expect(tail.sampleRate).toBe(16000);
    expect(tail.samples.length).toBe((PROSODY_WINDOW_MS / 1000) * 16000);
    expect(tail.samples[tail.samples.length - 1]).toBe(189); // the frame ending at 3800 ms
    expect(tail.samples[0]).toBe(190 - PROSODY_WINDOW_MS / 20);
    expect(audio.before(2000)).toBeUndefined(); // past what it keeps
  });

  it('gives what it has after a short start, and nothing for audio it never held', () => {
    const audio = new RecentAudio();
    for (let i = 0; i < 10; i++) audio.push(1000 + i * 20, frame(i), 16000);
    expect(audio.before(1100)!.samples.length).toBe(5 * 320);
    expect(audio.before(900)).toBeUndefined();
    expect(audio.before(5000)).toBeUndefined();
  });

  it('starts over after a gap in the audio or at a new rate', () => {
    const audio = new RecentAudio();
    for (let i = 0; i < 10; i++) audio.push(i * 20, frame(i), 16000);
    audio.push(1000, frame(99), 16000); // a gap: what came before is not the speech before this
    expect(audio.before(1020)!.samples.length).toBe(320);
    audio.push(1020, new Int16Array(160).fill(7), 8000);
    expect(audio.before(1040)).toEqual({
      samples: new Int16Array(160).fill(7),
      sampleRate: 8000,
      speaker: audio.speaker,
    });
  });
});
