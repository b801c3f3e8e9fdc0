import type { SessionState } from '@va/actor';
import { traceFields } from '@va/bus';
import type { AudioSource, ResponderSource } from '@va/protocol';
import type { Context } from '@va/telemetry';

/** Where the turn being played is kept (va_state), for a gateway that takes the session up after this one died. */
export const PLAYING_STATE = 'playing';
/** How often, at most, how far the turn has been heard is written: a successor repeats at most that much. */
const PLAYING_SAVE_MS = 200;

/** The turn being played and how far each source's text has been heard (text offsets), with its trace. */
export interface PlayingState {
  turnId: string;
  heardTo: Record<ResponderSource, number>;
  trace: Record<string, string>;
}

/**
 * Keeps how far the turn being played has been heard: written on its first frame, then at most every
 * PLAYING_SAVE_MS, dropped when it ends. A gateway that takes the session up asks tts to speak the turn again from
 * there — what the dead one held in its playout buffer is gone with it.
 */
export class PlayingRecord {
  private playing: PlayingState | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly state: SessionState) {}

  /** A frame of `turnId` was played: its words are heard up to `textOffset`. */
  played(turnId: string, source: AudioSource, textOffset: number | undefined, context: Context): void {
    if (source === 'filler' || textOffset === undefined) return;
    if (this.playing?.turnId !== turnId) {
      this.playing = { turnId, heardTo: { fast: 0, deep: 0 }, trace: traceFields(context) };
      this.playing.heardTo[source] = textOffset;
      this.save();
      return;
    }
    if (textOffset <= this.playing.heardTo[source]) return;
    this.playing.heardTo[source] = textOffset;
    this.timer ??= setTimeout(() => this.save(), PLAYING_SAVE_MS);
  }

  /** The turn was played to its end or interrupted: nothing to take up. */
  ended(turnId: string): void {
    if (this.playing?.turnId !== turnId) return;
    this.stop();
    this.playing = undefined;
    this.state.drop(PLAYING_STATE);
  }

  /** No more writes (the session leaves this gateway). */
  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private save(): void {
    this.stop();
    if (this.playing) this.state.keep(PLAYING_STATE, this.playing);
  }
}
