import { parseEnv, runService, ServiceEnv } from '@va/actor';
import { failoverCounter, providerChain } from '@va/providers';
import { z } from 'zod';
import { ORPHAN_AFTER_MS, STAGE, turnDetectorActor } from './actor.js';
import { ENDPOINTING_DEFAULTS as D } from './endpointing.js';

const ms = (fallback: number) => z.coerce.number().int().nonnegative().default(fallback);
const flag = (fallback: boolean) =>
  z
    .enum(['0', '1', 'true', 'false'])
    .default(fallback ? '1' : '0')
    .transform((v) => v === '1' || v === 'true');

// Service-wide turn-taking defaults; a session may override each in session.open (`config.turn`).
const env = parseEnv(
  ServiceEnv.extend({
    /** `silero` (default), `energy`, or a chain tried in order until one loads (`silero,energy`). */
    VAD_PROVIDER: z.string().default('silero'),
    /**
     * How finished the words sound (the `eou` provider kind): `ngram-prosody` (the Debian trigram and the speech's
     * prosody), falling back to `heuristic` (a word list) where the language model is not installed.
     */
    EOU_PROVIDER: z.string().default('ngram-prosody,heuristic'),
    /** `fixed` is LiveKit Agents' default (500 ms after VAD end), kept as the benchmark baseline. */
    TURN_ENDPOINTING: z.enum(['adaptive', 'fixed']).default(D.mode),
    TURN_FIXED_DELAY_MS: ms(D.fixedDelayMs),
    TURN_MIN_DELAY_MS: ms(D.minDelayMs),
    TURN_MAX_DELAY_MS: ms(D.maxDelayMs),
    TURN_BARGE_IN_MIN_SPEECH_MS: ms(D.bargeInMinSpeechMs),
    TURN_MIN_INTERRUPTION_WORDS: ms(D.minInterruptionWords),
    TURN_FALSE_INTERRUPTION_MS: ms(D.falseInterruptionMs),
    TURN_RESUME_FALSE_INTERRUPTION: flag(D.resumeFalseInterruption),
    TURN_PREEMPTIVE_GENERATION: flag(D.preemptiveGeneration),
    /** End on the recogniser's stable partial when the words score at least this (above 1: wait for the final). */
    TURN_EARLY_END_MIN_SCORE: z.coerce.number().min(0).default(D.earlyEndMinScore),
    /** A session with no microphone frame for this long (its gateway gone, none resumed it) is closed; 0: never. */
    TURN_ORPHAN_AFTER_MS: ms(ORPHAN_AFTER_MS),
  }),
);
// One VAD held for the life of the process (never closed): the model every session's VAD shares is loaded
// before the first session opens, and stays loaded while no session is open.
const onFailover = failoverCounter(STAGE);
await providerChain('vad', env.VAD_PROVIDER, process.env, onFailover);
const eou = await providerChain('eou', env.EOU_PROVIDER, process.env, onFailover);
await runService({
  stage: STAGE,
  env,
  createActor: turnDetectorActor(
    () => providerChain('vad', env.VAD_PROVIDER, process.env, onFailover),
    {
      mode: env.TURN_ENDPOINTING,
      fixedDelayMs: env.TURN_FIXED_DELAY_MS,
      minDelayMs: env.TURN_MIN_DELAY_MS,
      maxDelayMs: env.TURN_MAX_DELAY_MS,
      bargeInMinSpeechMs: env.TURN_BARGE_IN_MIN_SPEECH_MS,
      minInterruptionWords: env.TURN_MIN_INTERRUPTION_WORDS,
      falseInterruptionMs: env.TURN_FALSE_INTERRUPTION_MS,
      resumeFalseInterruption: env.TURN_RESUME_FALSE_INTERRUPTION,
      preemptiveGeneration: env.TURN_PREEMPTIVE_GENERATION,
      earlyEndMinScore: env.TURN_EARLY_END_MIN_SCORE,
    },
    eou,
    { orphanAfterMs: env.TURN_ORPHAN_AFTER_MS },
  ),
});
