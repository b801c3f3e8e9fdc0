import { describe, expect, it } from 'vitest';
import { speak } from '@va/testkit';
import type { EndOfUtteranceModel } from '../src/types.js';

/** Complete turns a user might say, and the same words cut where a speaker pauses mid-sentence. */
export const FINISHED = ['what time is it', 'book a table for two', 'no thanks', 'yes', 'is it going to rain today?'];
export const UNFINISHED = [
  'i would like a table for',
  'can you tell me about the',
  'my name is and',
  'i want to go to',
];

/**
 * What every end-of-utterance model must do: a score in 0..1 for any text (empty, long, odd characters), the
 * same score for the same words, and finished turns scored above the same words cut mid-sentence on average.
 */
export function eouConformance(name: string, make: () => EndOfUtteranceModel | Promise<EndOfUtteranceModel>): void {
  describe(`${name} (eou conformance)`, () => {
    it('names itself and scores any text within 0..1', async () => {
      const eou = await make();
      expect(eou.provider).toMatch(/\S/);
      expect(eou.name).toMatch(/\S/);
      for (const text of ['', '   ', 'x'.repeat(4000), '¿qué? 🤖 …', 'um', ...FINISHED, ...UNFINISHED]) {
        const s = eou.score(text);
        expect(Number.isFinite(s), text).toBe(true);
        expect(s).toBeGreaterThanOrEqual(0);
        expect(s).toBeLessThanOrEqual(1);
      }
    });

    it('is deterministic: the same words score the same', async () => {
      const eou = await make();
      for (const text of [...FINISHED, ...UNFINISHED]) expect(eou.score(text)).toBe(eou.score(text));
    });

    it('scores finished turns above words cut mid-sentence', async () => {
      const eou = await make();
      const mean = (texts: string[]) => texts.reduce((n, t) => n + eou.score(t), 0) / texts.length;
      expect(mean(FINISHED)).toBeGreaterThan(mean(UNFINISHED) + 0.3);
      expect(eou.score('')).toBeLessThan(mean(FINISHED));
    });

    it('takes the speech before the pause as well: a score in 0..1, the same for the same audio', async () => {
      const eou = await make();
      for (const text of ['what time is it', 'i would like a table for']) {
        const speech = await speak(text);
        const s = eou.score(text, speech);
        expect(Number.isFinite(s), text).toBe(true);
        expect(s).toBeGreaterThanOrEqual(0);
        expect(s).toBeLessThanOrEqual(1);
        expect(eou.score(text, speech)).toBe(s);
        expect(eou.score(text, { samples: speech.samples.slice(), sampleRate: speech.sampleRate })).toBe(s);
      }
      const silence = { samples: new Int16Array(16000), sampleRate: 16000 };
      expect(Number.isFinite(eou.score('yes', silence))).toBe(true);
    });
  });
}
