/**
 * End-of-turn policy: VAD silence plus an end-of-utterance score (the `eou` model: the words, and how they were
 * said). The score sets how long the user must have been quiet before the turn ends, between `minDelayMs`
 * (finished) and `maxDelayMs` (not yet); the recogniser's final must be in — unless `maxDelayMs` has passed, or the partial is
 * stable and the score ≥ `earlyEndMinScore`.
 */
export interface EndpointingOptions {
  /**
   * `adaptive` (ours): the score-driven delay above, counted from where the VAD heard the speech stop — before
   * it confirms its own silence window. `fixed`: always `fixedDelayMs` after the VAD's confirmed end, then the
   * final — LiveKit Agents' classic default, kept as the benchmark baseline.
   */
  mode: 'adaptive' | 'fixed';
  fixedDelayMs: number;
  /** Quiet needed after a finished-sounding utterance (score 1). */
  minDelayMs: number;
  /** Quiet needed after an unfinished-sounding one (score 0); also the longest wait for the final. */
  maxDelayMs: number;
  /**
   * User speech over the agent's reply must last this long to pause it (a barge-in); 0: the first frame the VAD
   * calls speech. Short, so the agent stops within ~150 ms of the user starting; a false interruption costs a
   * short pause, because the agent resumes.
   */
  bargeInMinSpeechMs: number;
  /** Words the user must say over the agent for the barge-in to end its turn (0: the speech alone does). */
  minInterruptionWords: number;
  /** A barge-in that yields too few words by the time the user has been quiet this long is noise: resume. */
  falseInterruptionMs: number;
  /** Resume after a false interruption; off, every barge-in ends the agent's turn at once. */
  resumeFalseInterruption: boolean;
  /**
   * Send a `preview` turn as soon as the user is quiet and their words look settled, before the endpointing
   * delay is over, so responders start early; a preview the committed words do not match is cancelled.
   */
  preemptiveGeneration: boolean;
  /** Speech resuming this soon after an unfinished-sounding turn was sent continues it: its words carry over. */
  continuationWindowMs: number;
  /**
   * Words the model scores at least this finished end the turn on the recogniser's stable partial, without
   * waiting for its final (pocketsphinx's comes ~0.5 s after the speech); a final that differs replaces the turn.
   * Above 1: always wait for the final.
   */
  earlyEndMinScore: number;
}

export const ENDPOINTING_DEFAULTS = {
  mode: 'adaptive',
  fixedDelayMs: 500,
  minDelayMs: 150,
  maxDelayMs: 1500,
  bargeInMinSpeechMs: 0,
  minInterruptionWords: 1,
  falseInterruptionMs: 1000,
  resumeFalseInterruption: true,
  preemptiveGeneration: true,
  continuationWindowMs: 1500,
  earlyEndMinScore: 0.8,
} as const satisfies EndpointingOptions;

/**
 * The quiet an utterance needs before its turn ends: quadratic, so finished-sounding words end fast and a middling
 * score waits a little. (The end-of-turn bench's best policies for the model are steeper — end at once above ~0.75,
 * else wait the timeout — and cut off fewer pauses, but make a plain "what time is it" wait 1.5 s: the deployed
 * mapping favours the common finished turn; `npm run bench -- --eot` shows both, the curve and the live row.)
 */
export function endpointDelayMs(score: number, opts: Pick<EndpointingOptions, 'minDelayMs' | 'maxDelayMs'>): number {
  const unsure = 1 - Math.min(1, Math.max(0, score));
  return opts.minDelayMs + unsure * unsure * (opts.maxDelayMs - opts.minDelayMs);
}
