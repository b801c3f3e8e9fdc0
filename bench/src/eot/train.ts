// npm run eot:train [-- --corpus FILE] [--voices SPEC] [--seed N] [--out FILE]
// Fits the `ngram-prosody` end-of-utterance model on the TRAIN split of the corpus (never on eval) and writes
// libs/providers/eou-model.json. Reproducible: same corpus, voices and seed → the same file.
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  EOU_WEIGHTS_FILE,
  EouFeatureReader,
  logistic,
  NgramLanguageModel,
  SpeakerPitch,
  SPEECH_FIT_FEATURES,
  TEXT_FEATURES,
  type EouWeights,
} from '@va/providers';
import { EOT_VOICES, formatSpeakerVoice, parseSpeakerVoices, type MarkedUtterance } from '@va/testkit';
import { DEFAULT_CORPUS, loadCorpus, takes, type EotTake } from './corpus.js';
import { auc, fitLogistic, type Example } from './fit.js';
import { synthesizeTakes, tailBefore } from './takes.js';

const { values: args } = parseArgs({
  options: {
    corpus: { type: 'string' },
    voices: { type: 'string' },
    seed: { type: 'string', default: '1' },
    out: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (args.help) {
  console.log(
    'usage: npm run eot:train -- [--corpus FILE] [--voices flite:kal,espeak-ng:en-us@1.1] [--seed N] [--out FILE]',
  );
  process.exit(0);
}

const corpusFile = args.corpus ?? fileURLToPath(DEFAULT_CORPUS);
const corpus = loadCorpus(corpusFile);
const voices = args.voices ? parseSpeakerVoices(args.voices) : [...EOT_VOICES];
const seed = Number(args.seed);
const out = args.out ?? fileURLToPath(EOU_WEIGHTS_FILE);
const lm = NgramLanguageModel.load();
const reader = new EouFeatureReader(lm);

interface Labelled {
  text: Example;
  speech: Example;
}

/**
 * A take gives one unfinished example per pause (the words before it) and one finished at its end. `speaker`: its
 * voice's pitch range so far, as a session learns it (takes come in order).
 */
function examplesOf(take: EotTake, heard: MarkedUtterance, speaker: SpeakerPitch): Labelled[] {
  const points = [
    ...heard.pauses.map((p) => ({ words: p.wordsBefore, atMs: p.startMs, y: 0 as const })),
    { words: take.text.replace(/\|/g, ' '), atMs: heard.speechEndMs, y: 1 as const },
  ];
  return points.map(({ words, atMs, y }) => {
    const f = reader.read(words, { ...tailBefore(heard.pcm, atMs), speaker });
    return { text: { x: f.text, y }, speech: { x: f.speech!, y } };
  });
}

async function examples(split: 'train' | 'eval'): Promise<{ rows: Labelled[]; skipped: number; takes: number }> {
  const all = takes(corpus, voices, split, seed);
  const rows: Labelled[] = [];
  let skipped = 0;
  const speakers = new Map<string, SpeakerPitch>();
  await synthesizeTakes(all, (take, heard) => {
    if (heard instanceof Error) return void skipped++;
    const voice = formatSpeakerVoice(take.voice);
    const speaker = speakers.get(voice) ?? new SpeakerPitch();
    speakers.set(voice, speaker);
    rows.push(...examplesOf(take, heard, speaker));
  });
  return { rows, skipped, takes: all.length };
}

/** L2 weight of the speech fit (the text fit keeps 1): 10, 30 and 100 score alike (AUC within 0.001). */
const SPEECH_L2 = 30;

const started = Date.now();
const train = await examples('train');
console.log(
  `train: ${train.takes} takes (${train.skipped} skipped), ${train.rows.length} examples, ` +
    `${train.rows.filter((r) => r.text.y === 1).length} ends`,
);
const text = fitLogistic(train.rows.map((r) => r.text));
// The speech fit has ~90 features (the pairs): a stronger prior keeps it from learning the training voices' quirks.
const speech = fitLogistic(
  train.rows.map((r) => r.speech),
  SPEECH_L2,
);

const evalSet = await examples('eval');
const aucOf = (rows: Labelled[], which: 'text' | 'speech') =>
  Math.round(
    auc(rows.map((r) => ({ p: logistic(which === 'text' ? text : speech, r[which].x), y: r[which].y }))) * 1000,
  ) / 1000;

const weights: EouWeights = {
  version: 1,
  textFeatures: [...TEXT_FEATURES],
  speechFeatures: [...SPEECH_FIT_FEATURES],
  text,
  speech,
  fitted: {
    by: 'npm run eot:train',
    corpus: relative(process.cwd(), corpusFile),
    corpusSha256: createHash('sha256').update(readFileSync(corpusFile)).digest('hex'),
    split: 'train',
    seed,
    voices: voices.map(formatSpeakerVoice),
    l2: { text: 1, speech: SPEECH_L2 },
    examples: train.rows.length,
    skippedTakes: train.skipped,
    auc: {
      train: { text: aucOf(train.rows, 'text'), speech: aucOf(train.rows, 'speech') },
      eval: { text: aucOf(evalSet.rows, 'text'), speech: aucOf(evalSet.rows, 'speech') },
    },
  },
};
writeFileSync(out, `${JSON.stringify(weights, null, 2)}\n`);
console.log(`AUC ${JSON.stringify(weights.fitted.auc)}`);
console.log(`wrote ${out} in ${Math.round((Date.now() - started) / 1000)} s`);
lm.free();
