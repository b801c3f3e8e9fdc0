import { readFileSync } from 'node:fs';
import { uniformFloat64 } from 'pure-rand/distribution/uniformFloat64';
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus';
import { formatSpeakerVoice, type PauseStyle, type SpeakerVoice } from '@va/testkit';
import { z } from 'zod';

/**
 * The end-of-turn corpus (bench/eot/corpus.json, or `--corpus FILE`): user turns whose `|` marks where a speaker
 * may pause mid-utterance. `pauses` (ms, one per `|`) is optional: drawn from the seed when absent. `split` is
 * optional: by default a hash of the text puts half the corpus in `train` (what `npm run eot:train` fits on)
 * and half in `eval` (what the bench scores), so the model is never measured on what it learnt from.
 */
const Utterance = z
  .object({
    text: z
      .string()
      .min(1)
      .max(600)
      .refine((t) => !/^\s*\||\|\s*$/.test(t) && !t.includes('||'), 'a `|` must stand between words'),
    pauses: z.array(z.number().int().min(100).max(5000)).optional(),
    kind: z.string().max(40).optional(),
    split: z.enum(['train', 'eval']).optional(),
  })
  .refine((u) => !u.pauses || u.pauses.length === markers(u.text), {
    message: 'pauses must have one entry per `|` in the text',
  });

export const EotCorpus = z.object({ description: z.string().optional(), utterances: z.array(Utterance).min(1) });
export type EotCorpus = z.infer<typeof EotCorpus>;

export const DEFAULT_CORPUS = new URL('../../eot/corpus.json', import.meta.url);

function markers(text: string): number {
  return text.split('|').length - 1;
}

export function loadCorpus(file: URL | string = DEFAULT_CORPUS): EotCorpus {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`corpus ${String(file)}: ${(err as Error).message}`);
  }
  const parsed = EotCorpus.safeParse(raw);
  if (!parsed.success) throw new Error(`corpus ${String(file)}: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}

/** FNV-1a: a stable hash of a string, for the split and per-utterance seeds. */
export function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

export function splitOf(u: { text: string; split?: 'train' | 'eval' }): 'train' | 'eval' {
  return u.split ?? (fnv1a(u.text) % 2 === 0 ? 'train' : 'eval');
}

/** Mid-utterance pauses drawn when the corpus gives none: 300–1500 ms, log-uniform (short pauses are commoner). */
export const PAUSE_RANGE_MS = [300, 1500] as const;

/** One utterance as one voice says it: its words, where it pauses and for how long, and how each pause sounds. */
export interface EotTake {
  text: string;
  kind: string;
  split: 'train' | 'eval';
  voice: SpeakerVoice;
  pausesMs: number[];
  styles: PauseStyle[];
}

/**
 * Every utterance of `split` in every voice, with its pauses: the corpus's own, else drawn from `seed` per
 * utterance and voice. Half the pauses of the flite voices are `cut` (no prosodic cue, the words just stop), half
 * `phrase` (a continuation contour): speakers do both.
 */
export function takes(
  corpus: EotCorpus,
  voices: readonly SpeakerVoice[],
  split: 'train' | 'eval',
  seed: number,
): EotTake[] {
  const out: EotTake[] = [];
  for (const u of corpus.utterances) {
    if (splitOf(u) !== split) continue;
    for (const voice of voices) {
      const rng = xoroshiro128plus((seed ^ fnv1a(`${u.text}\u0000${formatSpeakerVoice(voice)}`)) >>> 0);
      const n = markers(u.text);
      const [lo, hi] = PAUSE_RANGE_MS;
      const pausesMs =
        u.pauses ?? Array.from({ length: n }, () => Math.round(lo * Math.pow(hi / lo, uniformFloat64(rng))));
      const styles = Array.from({ length: n }, (): PauseStyle => (uniformFloat64(rng) < 0.5 ? 'cut' : 'phrase'));
      out.push({ text: u.text, kind: u.kind ?? 'other', split, voice, pausesMs, styles });
    }
  }
  return out;
}
