import { randomBytes } from 'node:crypto';
import type { Turn } from '@va/protocol';

/**
 * What a new owner needs to carry on mid-conversation: which audio is already answered, the agent turn a user
 * could barge in on, the words heard so far of the turn being collected, and a preview the responders started on.
 */
export interface TurnState {
  emittedUpToMs: number;
  agentTurn?: string;
  lastEmitted?: {
    turnId: string;
    text: string;
    score: number;
    atWall: number;
    /** Ended on a partial: the final for it is still to come, and the words before that partial. */
    early?: { before: string };
  };
  finals: string[];
  lastFinalEndMs: number;
  preview?: { turnId: string; text: string; atWall: number };
}

/**
 * The user's side: quiet (`listening`), talking (`speaking`, the VAD may still be inside its silence window), or
 * stopped at `endMs` while the end of their turn is judged (`judging`: quiet long enough for how finished the words
 * sound, and the recogniser's final in).
 */
export type UserState = { phase: 'listening' } | { phase: 'speaking' } | { phase: 'judging'; endMs: number };

/**
 * The agent's side: no reply (`idle`), a reply being answered or played (`speaking`), or paused because the user
 * spoke over it (`barged-in`) until words end it or quiet resumes it.
 */
export type AgentState =
  | { phase: 'idle' }
  | { phase: 'speaking'; turnId: string }
  | { phase: 'barged-in'; turnId: string; atWall: number; resumeTimer?: NodeJS.Timeout };

/** One analysed audio frame: the VAD's confirmed transitions and how loud this frame was for it. */
export interface HeardFrame {
  tsMs: number;
  /** Start/end the VAD confirmed with this frame (hysteresis and minimum durations applied). */
  events: readonly { kind: 'start' | 'end'; atMs: number }[];
  /** The VAD is inside speech: a start confirmed and no end yet. */
  inSpeech: boolean;
  /** This frame alone: above the VAD's start threshold (`speech`), below its end threshold (`quiet`), or between. */
  level: 'speech' | 'quiet' | 'between';
}

/** What turn-taking does to the world; the actor sends it on the bus, a test records it. */
export interface TurnTakingEffects {
  /** A message on the session's `turn` channel (end, preview, barge-in, resume). */
  turn(msg: Turn): void;
  /** A confirmed VAD transition on the `vad` channel. */
  vad(kind: 'start' | 'end', atMs: number): void;
  /** Cancels a turn everywhere (`control`). */
  cancel(turnId: string, reason: string): void;
  /** Keeps the state for a successor. */
  save(state: TurnState): void;
  /** A user turn ended `delayMs` after its speech: the `turn-detect` span and the end-of-utterance metric. */
  ended(turn: { turnId: string; text: string; score: number; delayMs: number; previewedAt?: number }): void;
  /** A turn ended on a partial was replaced by the final's different words (counted, logged). */
  revised?(from: { turnId: string; text: string }, to: { turnId: string; text: string }): void;
  /** The user spoke over the agent's turn (counted, logged). */
  bargedIn(turnId: string, atMs: number): void;
  /** A barge-in without words: the agent plays on. */
  resumed(turnId: string): void;
}

export function newTurnId(): string {
  return `t${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
}

/** Words as a recogniser's text compares: case and punctuation do not make a preview differ. */
export function sameWords(a: string, b: string): boolean {
  const norm = (t: string) =>
    t
      .toLowerCase()
      .replace(/[^\p{L}\p{N}' ]/gu, ' ')
      .split(/\s+/)
      .filter(Boolean)
      .join(' ');
  return norm(a) === norm(b);
}

export function wordCount(text: string): number {
  return text.split(/\s+/).filter((w) => /[\p{L}\p{N}]/u.test(w)).length;
}
