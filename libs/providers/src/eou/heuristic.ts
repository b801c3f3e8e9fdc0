import type { EndOfUtteranceModel } from '../types.js';

/**
 * The default end-of-utterance model: trailing words and punctuation. A trailing "and", "with", "um"… sounds
 * unfinished (0.1), a sentence mark finished (0.95), anything else mostly finished (0.85).
 */
const UNFINISHED = new Set([
  'and',
  'but',
  'or',
  'so',
  'because',
  'if',
  'then',
  'the',
  'a',
  'an',
  'to',
  'of',
  'with',
  'for',
  'my',
  'your',
  'um',
  'uh',
  'er',
  'like',
  'is',
  'are',
  'was',
  'i',
  "i'm",
  'we',
  'that',
  'which',
  'about',
  'in',
  'on',
  'at',
]);

function lastWord(text: string): string {
  const words = text
    .toLowerCase()
    .replace(/[^a-z' ]/g, ' ')
    .trim()
    .split(/\s+/);
  return words[words.length - 1] ?? '';
}

export function soundsUnfinished(text: string): boolean {
  const t = text.trim();
  if (t === '' || /[.?!]$/.test(t)) return false;
  return UNFINISHED.has(lastWord(t));
}

/** A rough probability that the user has finished, from the words alone. */
export function endOfUtteranceProbability(text: string): number {
  const t = text.trim();
  if (t === '') return 0;
  if (/[.?!]$/.test(t)) return 0.95;
  return soundsUnfinished(t) ? 0.1 : 0.85;
}

/** Trailing words and punctuation: the default end-of-utterance model. */
export const heuristicEou: EndOfUtteranceModel = {
  provider: 'heuristic',
  name: 'heuristic',
  score: endOfUtteranceProbability,
};
