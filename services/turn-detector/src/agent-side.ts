import { CANCEL_REASON } from '@va/protocol';
import type { EndpointingOptions } from './endpointing.js';
import type { AgentState, TurnTakingEffects } from './turn-state.js';

type AgentOptions = Pick<
  EndpointingOptions,
  'resumeFalseInterruption' | 'minInterruptionWords' | 'falseInterruptionMs'
>;

/**
 * The agent's side of turn-taking: no reply (`idle`), a reply being answered or played (`speaking`), or paused
 * because the user spoke over it (`barged-in`) until words end it (`commit`) or quiet resumes it. What it decides
 * goes to the same effects as the user's side.
 */
export class AgentSide {
  state: AgentState = { phase: 'idle' };

  constructor(
    private readonly opts: AgentOptions,
    private readonly effects: Pick<TurnTakingEffects, 'turn' | 'cancel' | 'bargedIn' | 'resumed'>,
    /** The audio clock now (a resume is dated there). */
    private readonly nowMs: () => number,
    /** A barge-in ended the agent's turn: the user's words begin (`atWall`: when the user started over it). */
    private readonly onCommitted: (turnId: string, atWall: number) => void,
  ) {}

  /** The agent turn a user could barge in on. */
  get turnId(): string | undefined {
    return this.state.phase === 'idle' ? undefined : this.state.turnId;
  }

  /** A reply (or a greeting) begins. */
  speaks(turnId: string): void {
    this.stopTimer();
    this.state = { phase: 'speaking', turnId };
  }

  /** The turn finished playing. */
  playedOut(turnId: string): boolean {
    if (this.turnId !== turnId) return false;
    this.stopTimer();
    this.state = { phase: 'idle' };
    return true;
  }

  stop(): void {
    this.stopTimer();
  }

  /**
   * speaking → barged-in: the user speaks over the agent's turn: pause its playout at once, then end the turn
   * when words come (`commit`) or play on when none do. `words`: how many the user has said so far.
   */
  bargeIn(atMs: number, words: number): void {
    if (this.state.phase !== 'speaking') return;
    const { turnId } = this.state;
    this.state = { phase: 'barged-in', turnId, atWall: Date.now() };
    this.effects.bargedIn(turnId, atMs);
    this.effects.turn({ turnId, kind: 'barge-in', text: '', eouProb: 0, speechEndMs: atMs });
    // Words may be in before the VAD has heard enough (the recogniser can be quicker): they count.
    if (!this.opts.resumeFalseInterruption || words >= this.opts.minInterruptionWords) this.commit();
  }

  /** Words over a paused turn: enough of them end it. */
  heardWords(words: number): void {
    if (this.state.phase === 'barged-in' && words >= this.opts.minInterruptionWords) this.commit();
  }

  /** barged-in → idle: words over the agent end its turn everywhere (LLMs, tts, playout); the user's begins. */
  commit(): void {
    if (this.state.phase !== 'barged-in') return;
    const { turnId, atWall } = this.state;
    this.stopTimer();
    this.state = { phase: 'idle' };
    this.onCommitted(turnId, atWall);
    this.effects.cancel(turnId, CANCEL_REASON.bargeIn);
  }

  /** While barged in: the resume countdown runs only while the user is quiet. */
  follow(userSpeaking: boolean): void {
    const agent = this.state;
    if (agent.phase !== 'barged-in') return;
    if (userSpeaking) this.stopTimer();
    else agent.resumeTimer ??= setTimeout(() => this.resumeAfterNoise(), this.opts.falseInterruptionMs);
  }

  /** barged-in → speaking: quiet for `falseInterruptionMs` without words (a cough, a door): play on. */
  private resumeAfterNoise(): void {
    if (this.state.phase !== 'barged-in') return;
    const { turnId } = this.state;
    this.state = { phase: 'speaking', turnId };
    this.effects.resumed(turnId);
    this.effects.turn({ turnId, kind: 'resume', text: '', eouProb: 0, speechEndMs: this.nowMs() });
  }

  private stopTimer(): void {
    if (this.state.phase !== 'barged-in') return;
    clearTimeout(this.state.resumeTimer);
    this.state.resumeTimer = undefined;
  }
}
