import { RecentMap } from '@va/actor';
import type { TurnTimeline } from '@va/protocol';

/** Session-clock arrival of each stage's first output for a turn (see `TurnTimeline`). */
type StageMarks = Partial<Record<'turnEndMs' | 'audioReadyMs' | 'answerAudioMs', number>>;
/** Turns whose marks are kept at once (a turn's marks go when it is played; this bounds strays). */
const MAX_MARKED_TURNS = 64;

/** When each of a turn's outputs first reached the gateway: the turn's timeline in the session record. */
export class TurnMarks {
  private readonly marks = new RecentMap<string, StageMarks>(MAX_MARKED_TURNS);

  /** Notes, once, when a stage's first output for a turn arrived (`nowMs`: the session clock). */
  mark(turnId: string, key: keyof StageMarks, nowMs: number): void {
    let m = this.marks.get(turnId);
    if (!m) this.marks.set(turnId, (m = {}));
    m[key] ??= nowMs;
  }

  forget(turnId: string): void {
    this.marks.delete(turnId);
  }

  /** The turn's timeline, each mark counted from the end of the user's speech; the marks are forgotten. */
  timeline(turnId: string, speechEndMs: number, firstAudioMs: number | undefined): TurnTimeline {
    const m = this.marks.get(turnId) ?? {};
    this.marks.delete(turnId);
    const since = (atMs: number | undefined) => (atMs === undefined ? null : atMs - speechEndMs);
    return {
      turnEndMs: since(m.turnEndMs),
      audioReadyMs: since(m.audioReadyMs),
      answerAudioMs: since(m.answerAudioMs),
      playedMs: since(firstAudioMs),
    };
  }
}
