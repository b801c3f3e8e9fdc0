import { RecentMap } from './recent.js';

/** Turn ids remembered as cancelled, so late data of those turns is dropped. Bounded: sessions are long. */
const MAX_REMEMBERED_TURNS = 256;

/** A session's turns: a signal per turn that fires when it is cancelled, and which were, and why. */
export class TurnCancellation {
  private readonly turns = new RecentMap<string, AbortController>(MAX_REMEMBERED_TURNS);
  /** Cancelled turns and why. */
  private readonly cancelled = new RecentMap<string, string>(MAX_REMEMBERED_TURNS);

  /** `session` fires when the session ends here: every turn's signal fires with it. */
  constructor(private readonly session: AbortSignal) {}

  /** The turn's signal; already aborted when the turn was cancelled before (or the session ended). */
  signal(turnId: string): AbortSignal {
    let ctl = this.turns.get(turnId);
    if (!ctl) {
      ctl = new AbortController();
      if (this.cancelled.has(turnId) || this.session.aborted) ctl.abort(new Error(`turn ${turnId} cancelled`));
      this.turns.set(turnId, ctl);
    }
    return AbortSignal.any([ctl.signal, this.session]);
  }

  isCancelled(turnId: string): boolean {
    return this.cancelled.has(turnId);
  }

  reason(turnId: string): string | undefined {
    return this.cancelled.get(turnId);
  }

  /** Forgets a finished turn's controller (its cancellation, if any, is still remembered). */
  end(turnId: string): void {
    this.turns.delete(turnId);
  }

  /** Remembers the turn as cancelled; false when it already was. */
  remember(turnId: string, reason: string): boolean {
    if (this.cancelled.has(turnId)) return false;
    this.cancelled.set(turnId, reason);
    return true;
  }

  /** Fires the turn's signal, if anyone asked for it. */
  abort(turnId: string, reason: string): void {
    this.turns.get(turnId)?.abort(new Error(`turn ${turnId} cancelled: ${reason}`));
  }
}
