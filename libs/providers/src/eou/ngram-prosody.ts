import { readFileSync } from 'node:fs';
import { z } from 'zod';
import type { EndOfUtteranceModel } from '../types.js';
import { lmWords, NgramLanguageModel, type SentenceEnd } from './ngram.js';
import { prosodyOf, type Prosody, type SpeakerPitch, type SpeechTail } from './prosody.js';

/**
 * The default end-of-utterance model: a small logistic model over what the Debian trigram says of the words (how
 * likely the sentence ends after them) and how the speech before the pause sounded (pitch fall, final lengthening,
 * fade). Two fits share the features: `speech` (words and audio) and `text` (words alone, when no audio is given).
 * The weights are fitted by `npm run eot:train` on the training split of the bench corpus and committed
 * (libs/providers/eou-model.json).
 */
export const TEXT_FEATURES = [
  'ln_end',
  'ln_end_after_word',
  'trigram_seen',
  'trailing_filler',
  'unknown_share',
  'end_likely',
  'end_unlikely',
] as const;
export const SPEECH_FEATURES = [
  'pitch_slope',
  'final_pitch',
  'above_floor',
  'last_slope',
  'final_voiced_s',
  'final_run_ratio',
  'final_level',
  'energy_slope',
  'voiced_share',
  'at_floor',
  'near_floor',
  'rising_end',
  'falling_end',
  'above_speaker_floor',
  'above_speaker_median',
  'at_speaker_floor',
  'over_speaker_median',
] as const;

/**
 * Features whose pairwise products the speech fit also weighs: a fall means more after words that can end a
 * sentence, a long last syllable more at the speaker's floor (a linear model cannot say "and" on its own).
 */
const PAIRED = [
  'ln_end',
  'ln_end_after_word',
  'pitch_slope',
  'final_pitch',
  'above_floor',
  'last_slope',
  'final_voiced_s',
  'final_run_ratio',
  'final_level',
  'above_speaker_floor',
  'above_speaker_median',
] as const;
const PAIRS = PAIRED.flatMap((a, i) => PAIRED.slice(i).map((b) => [a, b] as const));
export const PAIR_FEATURES = PAIRS.map(([a, b]) => `${a}*${b}`);
/** Every feature of the speech fit, in order. */
export const SPEECH_FIT_FEATURES: readonly string[] = [...TEXT_FEATURES, ...SPEECH_FEATURES, ...PAIR_FEATURES];
const PAIR_INDEX = PAIRS.map(([a, b]) => [SPEECH_FIT_FEATURES.indexOf(a), SPEECH_FIT_FEATURES.indexOf(b)] as const);

/** Hesitations: the LM has them end sentences (its text is transcribed speech), a speaker who says one goes on. */
const FILLERS = new Set(['um', 'uh', 'er', 'erm', 'hmm', 'mm', 'uhm']);

const clip = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v));

/**
 * The words' features. Besides the raw log probabilities, two bins of the end's (a linear model cannot bend):
 * sentences very likely over, and very likely not. Not the number of words: in the corpus every pause comes
 * before the end, so fewer words "mean" a pause — and a plain "yes" would wait a second and a half.
 */
export function textFeatures(end: SentenceEnd, words: readonly string[]): number[] {
  return [
    end.lnEnd,
    end.lnEndAfterWord,
    end.order >= 3 ? 1 : 0,
    FILLERS.has(words[words.length - 1] ?? '') ? 1 : 0,
    words.length === 0 ? 0 : end.unknownWords / words.length,
    end.lnEnd > -1.5 ? 1 : 0,
    end.lnEnd < -3 ? 1 : 0,
  ];
}

/**
 * The prosody's features, with bins of the final pitch: at the stretch's floor (a final fall), rising, falling;
 * then the final pitch against the speaker's own range (learnt over the session: `range`), with its bins.
 */
export function speechFeatures(p: Prosody, range?: { median: number; floor: number }): number[] {
  const aboveFloor = clip(p.aboveFloor, 0, 24);
  const lastSlope = clip(p.lastSlope, -80, 80);
  const final = p.pitchSt?.final;
  const aboveSpeakerFloor = final !== undefined && range ? clip(final - range.floor, -12, 24) : 0;
  const aboveSpeakerMedian = final !== undefined && range ? clip(final - range.median, -12, 24) : 0;
  return [
    clip(p.pitchSlope, -60, 60),
    clip(p.finalPitch, -12, 12),
    aboveFloor,
    lastSlope,
    clip(p.finalVoicedMs / 1000, 0, 1),
    clip(p.finalRunRatio, 0, 4),
    clip(p.finalLevel, -40, 0),
    clip(p.energySlope, -200, 200) / 100,
    p.voicedShare,
    aboveFloor < 1 ? 1 : 0,
    aboveFloor < 3 ? 1 : 0,
    lastSlope > 10 ? 1 : 0,
    lastSlope < -10 ? 1 : 0,
    aboveSpeakerFloor,
    aboveSpeakerMedian,
    aboveSpeakerFloor < 1 ? 1 : 0,
    aboveSpeakerMedian > 2 ? 1 : 0,
  ];
}

/** The speech fit's features: the words', the audio's, and the products of PAIRED. */
export function speechFitFeatures(text: readonly number[], audio: readonly number[]): number[] {
  const x = [...text, ...audio];
  for (const [i, j] of PAIR_INDEX) x.push(x[i]! * x[j]!);
  return x;
}

const Logistic = z.object({
  bias: z.number(),
  weights: z.array(z.number()),
  /** Standardisation of each feature before its weight: (x − mean) / std. */
  mean: z.array(z.number()),
  std: z.array(z.number().positive()),
});
export type Logistic = z.infer<typeof Logistic>;

export const EouWeights = z.object({
  version: z.literal(1),
  textFeatures: z.array(z.string()),
  speechFeatures: z.array(z.string()),
  text: Logistic,
  speech: Logistic,
  /** How the fit was made: reproducible with `npm run eot:train` from these. */
  fitted: z.record(z.string(), z.unknown()),
});
export type EouWeights = z.infer<typeof EouWeights>;

export function logistic(model: Logistic, x: readonly number[]): number {
  let z = model.bias;
  for (let i = 0; i < x.length; i++) z += model.weights[i]! * ((x[i]! - model.mean[i]!) / model.std[i]!);
  return 1 / (1 + Math.exp(-z));
}

export const EOU_WEIGHTS_FILE = new URL('../../eou-model.json', import.meta.url);

export function readEouWeights(file: URL | string = EOU_WEIGHTS_FILE): EouWeights {
  const weights = EouWeights.parse(JSON.parse(readFileSync(file, 'utf8')));
  const expect = (got: readonly string[], want: readonly string[], fit: Logistic, what: string) => {
    if (got.join() !== want.join() || fit.weights.length !== want.length)
      throw new Error(
        `${String(file)}: the ${what} features are [${got.join(', ')}], this code reads [${want.join(', ')}]`,
      );
  };
  expect(weights.textFeatures, TEXT_FEATURES, weights.text, 'text');
  expect(weights.speechFeatures, SPEECH_FIT_FEATURES, weights.speech, 'speech');
  return weights;
}

/** Reads the features both the fit and the score use: the words through the n-gram, the audio through prosody. */
export class EouFeatureReader {
  /**
   * What was read of each pause's audio: score() runs on every frame of a pause, the audio is read once — and
   * learnt into its speaker's range once, after it was judged against the range so far.
   */
  private readonly heard = new WeakMap<SpeechTail, number[]>();

  constructor(readonly lm: NgramLanguageModel) {}

  read(text: string, speech?: SpeechTail): { text: number[]; speech?: number[] } {
    const words = lmWords(text);
    const t = textFeatures(this.lm.sentenceEnd(text), words);
    if (!speech) return { text: t };
    let audio = this.heard.get(speech);
    if (!audio) {
      audio = audioFeatures(prosodyOf(speech), speech.speaker);
      this.heard.set(speech, audio);
    }
    return { text: t, speech: speechFitFeatures(t, audio) };
  }
}

function audioFeatures(prosody: Prosody, speaker: SpeakerPitch | undefined): number[] {
  const features = speechFeatures(prosody, speaker?.range(prosody) ?? prosody.pitchSt);
  speaker?.learn(prosody);
  return features;
}

export class NgramProsodyEou implements EndOfUtteranceModel {
  readonly provider = 'ngram-prosody';
  readonly name = 'ngram-prosody';
  readonly features: EouFeatureReader;

  constructor(
    lm: NgramLanguageModel,
    private readonly weights: EouWeights,
  ) {
    this.features = new EouFeatureReader(lm);
  }

  score(text: string, speech?: SpeechTail): number {
    if (lmWords(text).length === 0) return 0;
    const f = this.features.read(text, speech);
    return f.speech ? logistic(this.weights.speech, f.speech) : logistic(this.weights.text, f.text);
  }
}

let shared: NgramProsodyEou | undefined;

/** One model per process: the language model is ~30 MB and read-only. */
export function ngramProsodyEou(): NgramProsodyEou {
  shared ??= new NgramProsodyEou(NgramLanguageModel.load(), readEouWeights());
  return shared;
}
