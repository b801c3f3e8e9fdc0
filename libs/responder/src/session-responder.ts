import { RecentSet } from '@va/actor';
import type { Turn } from '@va/protocol';
import type { Context } from '@va/telemetry';
import type { TurnVerdicts } from './answer.js';

/** A preview neither committed nor cancelled by then is given up on (the turn detector went away). */
const PREVIEW_VERDICT_TIMEOUT_MS = 10_000;
/** Turn ids a session remembers (started, committed, finished). */
const REMEMBERED_TURNS = 64;

/**
 * The committed turn being answered (va_state): if this instance dies mid-answer, the one that takes the session
 * over answers it again. tts drops the deltas it already has (by seq), so a model that says the same again
 * continues where the first stopped; one that does not has its new text spliced in at that point.
 */
export interface AnsweringState {
  turn: Turn;
  /** W3C trace context of the turn, so the retry is a span of the same trace. */
  trace: Record<string, string>;
}

/** What the session's turn bookkeeping asks of the world. */
export interface SessionResponderIo {
  /** Answers a turn (not awaited: the session keeps taking messages while it streams). */
  answer(turn: Turn, parent: Context, retried: boolean): Promise<void>;
  isCancelled(turnId: string): boolean;
  cancelReason(turnId: string): string | undefined;
  /** Keeps (or drops) the turn being answered for a successor; undefined = never (an opener is not retried). */
  keepAnswering?: { keep(state: AnsweringState): void; drop(): void; trace(parent: Context): Record<string, string> };
  /** The session moved elsewhere or closed: nothing is finished then, the next owner retries. */
  readonly closing: boolean;
}

/**
 * The turns of one session as a responder sees them: a turn is `previewed` (started early on a preview), then
 * `committed` (`turn end`: the same id) or cancelled; its answer ends `finished`. A committed turn is started at
 * once if no preview started it, never twice; a preview's tool calls and its span wait for the verdict.
 */
export class SessionResponder implements TurnVerdicts {
  private readonly started = new RecentSet<string>(REMEMBERED_TURNS);
  private readonly committed = new RecentSet<string>(REMEMBERED_TURNS);
  /** Turns whose generation ended here (a preview can finish before its commit arrives: nothing to retry). */
  private readonly finished = new RecentSet<string>(REMEMBERED_TURNS);
  private readonly awaitingVerdict = new Map<string, () => void>();
  /** The committed turn kept for a retry (the newest). */
  private answering: string | undefined;

  constructor(private readonly io: SessionResponderIo) {}

  /** Where a turn is for this responder. */
  stateOf(turnId: string): 'unknown' | 'previewed' | 'committed' | 'finished' {
    if (this.finished.has(turnId)) return 'finished';
    if (this.committed.has(turnId)) return 'committed';
    return this.started.has(turnId) ? 'previewed' : 'unknown';
  }

  /** A `turn` message: a preview or an end starts the answer; an end commits it. */
  turn(turn: Turn, parent: Context): void {
    if ((turn.kind !== 'end' && turn.kind !== 'preview') || turn.text.trim() === '') return;
    if (!this.started.has(turn.turnId)) this.start(turn, parent);
    if (turn.kind !== 'end') return;
    this.committed.add(turn.turnId);
    this.awaitingVerdict.get(turn.turnId)?.();
    // Saved once the answer is under way: the KV write is the retry's safety net, not on the turn's path.
    if (!this.io.isCancelled(turn.turnId) && !this.finished.has(turn.turnId)) this.rememberAnswering(turn, parent);
  }

  /** Taken over from an instance that died answering a committed turn: answer it again. True if it does. */
  retry(saved: AnsweringState, parent: Context): boolean {
    const { turnId } = saved.turn;
    if (this.started.has(turnId) || this.io.isCancelled(turnId)) return false;
    this.committed.add(turnId);
    this.answering = turnId;
    this.start(saved.turn, parent, true);
    return true;
  }

  /** Resolves when the preview is committed (`end` with its id) or cancelled, or after a timeout. */
  verdict(turnId: string, signal: AbortSignal): Promise<void> {
    if (this.committed.has(turnId) || signal.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        this.awaitingVerdict.delete(turnId);
        resolve();
      };
      const timer = setTimeout(done, PREVIEW_VERDICT_TIMEOUT_MS);
      signal.addEventListener('abort', done, { once: true });
      this.awaitingVerdict.set(turnId, done);
    });
  }

  cancelReason(turnId: string): string | undefined {
    return this.io.cancelReason(turnId);
  }

  private start(turn: Turn, parent: Context, retried = false): void {
    this.started.add(turn.turnId);
    // A failure was reported where it happened (the answer's error event); here it only ends the turn.
    const answered = () => this.answered(turn.turnId);
    void this.io.answer(turn, parent, retried).then(answered, answered);
  }

  /** Answered or cancelled: nothing to retry. (The session going elsewhere is neither: the next owner retries.) */
  private answered(turnId: string): void {
    if (this.io.closing) return;
    this.finished.add(turnId);
    if (this.answering !== turnId) return;
    this.answering = undefined;
    this.io.keepAnswering?.drop();
  }

  private rememberAnswering(turn: Turn, parent: Context): void {
    const keeper = this.io.keepAnswering;
    if (!keeper) return;
    this.answering = turn.turnId;
    keeper.keep({ turn: { ...turn, kind: 'end' }, trace: keeper.trace(parent) });
  }
}
