/**
 * End-of-turn policy (no open end-of-turn model ships offline, DESIGN §8): VAD silence plus transcript cues.
 * A turn ends once the recogniser's final for the speech is in — or after a bounded wait with what we have —
 * and waits longer when the words so far sound unfinished.
 */
export interface EndpointingOptions {
  /**
   * `adaptive` (ours): end as soon as the recogniser's final is in and the words sound finished.
   * `fixed`: always wait `fixedDelayMs` after VAD end, then for the final — LiveKit Agents' default behaviour,
   * kept as the benchmark baseline.
   */
  mode: 'adaptive' | 'fixed';
  fixedDelayMs: number;
  /** Longest wait after VAD end for the recogniser's final before deciding on what is there. */
  maxFinalWaitMs: number;
  /** Extra wait when the text ends like an unfinished sentence ("and", "so", "um"…). */
  incompleteExtraMs: number;
  /** A user utterance during the agent's reply must last this long to count as a barge-in. */
  bargeInMinSpeechMs: number;
  /**
   * Adaptive mode: once the recogniser's final is in, the words sound finished and the VAD has heard this much
   * quiet, end the turn without waiting for the VAD to confirm its silence (0: never).
   */
  earlyEndSilenceMs: number;
  /** Speech resuming this soon after a turn was sent continues that turn: its words are carried over. */
  continuationWindowMs: number;
}

export const ENDPOINTING_DEFAULTS = {
  mode: 'adaptive',
  fixedDelayMs: 500,
  maxFinalWaitMs: 900,
  incompleteExtraMs: 700,
  bargeInMinSpeechMs: 250,
  earlyEndSilenceMs: 120,
  continuationWindowMs: 1500,
} as const satisfies EndpointingOptions;

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
  if (/[.?!]$/.test(t)) return 0.9;
  return soundsUnfinished(t) ? 0.2 : 0.7;
}
