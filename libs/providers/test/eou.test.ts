import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createProvider, providerNames } from '../src/index.js';
import {
  endOfUtteranceProbability,
  heuristicEou,
  lmWords,
  NgramLanguageModel,
  NO_PROSODY,
  readEouWeights,
  SpeakerPitch,
  soundsUnfinished,
  speechFeatures,
  SPEECH_FEATURES,
  type Prosody,
} from '../src/eou/index.js';
import { eouConformance } from './eou.conformance.js';

// Every registered end-of-utterance model passes the kind's suite.
for (const name of providerNames('eou')) eouConformance(name, () => createProvider('eou', name));

describe('the heuristic end-of-utterance model', () => {
  it('is the registered default, and hears a trailing conjunction or article as unfinished', async () => {
    expect(await createProvider('eou', 'heuristic')).toBe(heuristicEou);
    expect(soundsUnfinished('book a table for two and')).toBe(true);
    expect(soundsUnfinished('is it raining?')).toBe(false);
    expect(endOfUtteranceProbability('what time is it')).toBeGreaterThan(endOfUtteranceProbability('a table with'));
  });
});

describe('the n-gram end of sentence (Debian en-us.lm.bin through sphinxbase)', () => {
  const lm = NgramLanguageModel.load();
  afterAll(() => lm.free());
  const end = (text: string) => lm.sentenceEnd(text).lnEnd;

  it('ranks words cut mid-sentence below the same words finished', () => {
    expect(end('a table for two on')).toBeLessThan(end('a table for two on friday'));
    expect(end('what time is it')).toBeGreaterThan(end('what time is'));
    expect(end('send it to')).toBeLessThan(end('send it to my wife'));
  });

  it('knows which words it has, case and punctuation aside', () => {
    expect(lm.sentenceEnd('What time is it?')).toEqual(lm.sentenceEnd('what time is it'));
    expect(lm.sentenceEnd('what time is it').unknownWords).toBe(0);
    expect(lm.sentenceEnd('zzqxv blorptang').unknownWords).toBe(2);
    expect(lmWords("I'd like  THE blue-one, please")).toEqual(["i'd", 'like', 'the', 'blue', 'one', 'please']);
  });

  it('refuses a missing model file with the package to install', () => {
    expect(() => NgramLanguageModel.load('/nonexistent/en-us.lm.bin')).toThrow(/pocketsphinx-en-us/);
  });
});

describe('the ngram-prosody model', () => {
  it('ranks the pairs the n-gram does, on words alone', async () => {
    const eou = await createProvider('eou', 'ngram-prosody');
    expect(eou.score('a table for two on')).toBeLessThan(eou.score('a table for two on friday'));
    expect(eou.score('what time is it')).toBeGreaterThan(eou.score('what time is'));
    expect(eou.score('i would like to um')).toBeLessThan(eou.score('i would like to book a flight'));
    expect(eou.score('')).toBe(0);
  });

  it('refuses weights fitted for other features', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'va-eou-')), 'w.json');
    const weights = readEouWeights();
    writeFileSync(file, JSON.stringify({ ...weights, textFeatures: ['ln_end'] }));
    expect(() => readEouWeights(file)).toThrow(/text features are \[ln_end\]/);
    writeFileSync(file, JSON.stringify({ ...weights, version: 2 }));
    expect(() => readEouWeights(file)).toThrow();
  });
});

describe("a speaker's pitch range", () => {
  const stretch = (median: number, floor: number, final?: number): Prosody => ({
    ...NO_PROSODY,
    pitchSt: { median, floor, ...(final === undefined ? {} : { final }) },
  });
  const feature = (p: Prosody, range?: { median: number; floor: number }) => {
    const f = speechFeatures(p, range);
    return (name: (typeof SPEECH_FEATURES)[number]) => f[SPEECH_FEATURES.indexOf(name)];
  };

  it("judges a stretch by its own range until three are heard, then by the speaker's", () => {
    const speaker = new SpeakerPitch();
    // A short stretch all high in the voice: against itself its end is at its floor; not against the speaker.
    const high = stretch(14, 13, 13);
    expect(speaker.range(high)).toEqual({ median: 14, floor: 13 });
    for (const s of [stretch(8, 2), stretch(9, 3), stretch(8, 2)]) speaker.learn(s);
    expect(speaker.range(high)).toEqual({ median: 8, floor: 2 });
    const f = feature(high, speaker.range(high));
    expect(f('above_speaker_floor')).toBe(11);
    expect(f('at_speaker_floor')).toBe(0);
    expect(f('over_speaker_median')).toBe(1);
    // Down at the speaker's floor: a final fall.
    expect(feature(stretch(8, 2, 2.5), speaker.range(high))('at_speaker_floor')).toBe(1);
    // Nothing voiced: nothing learnt, neutral features.
    speaker.learn(NO_PROSODY);
    expect(feature(NO_PROSODY, speaker.range(NO_PROSODY))('above_speaker_floor')).toBe(0);
  });
});
