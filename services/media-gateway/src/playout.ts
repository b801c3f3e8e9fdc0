import { AUDIO_SOURCES, type AudioSource } from '@va/protocol';

/** One frame of agent audio waiting to be played. */
export interface OutFrame {
  turnId: string;
  source: AudioSource;
  samples: Int16Array;
  textOffset: number;
}

/** What the user has heard of one agent turn so far. */
export interface TurnPlayout {
  turnId: string;
  playedMs: number;
  /** Text offset of the last frame played, per source. */
  offsets: Record<AudioSource, number>;
  /** Each source's text, as far as known (reply deltas, then the tts `speech` message). */
  texts: Record<AudioSource, string>;
  /** Sources whose every frame has been received. */
  complete: Set<AudioSource>;
  firstPlayedAt?: number;
}

/**
 * The gateway's playout buffer: tts sends audio as fast as it is made, the gateway plays it one frame per
 * tick in real time, so it always knows exactly which frames were heard and can flush the rest at once.
 */
export class PlayoutBuffer {
  private readonly queue: OutFrame[] = [];

  get queued(): number {
    return this.queue.length;
  }

  push(frame: OutFrame): void {
    this.queue.push(frame);
  }

  /** The next frame to play, if any; frames of `held` turns (paused, or not committed yet) wait. */
  next(held?: ReadonlySet<string>): OutFrame | undefined {
    const i = held && held.size > 0 ? this.queue.findIndex((f) => !held.has(f.turnId)) : 0;
    return i >= 0 ? this.queue.splice(i, 1)[0] : undefined;
  }

  hasFramesOf(turnId: string): boolean {
    return this.queue.some((f) => f.turnId === turnId);
  }

  /** Drops every queued frame of a turn (barge-in); returns how many. */
  flush(turnId: string): number {
    let dropped = 0;
    for (let i = this.queue.length - 1; i >= 0; i--) {
      if (this.queue[i]!.turnId === turnId) {
        this.queue.splice(i, 1);
        dropped++;
      }
    }
    return dropped;
  }
}

export function newTurnPlayout(turnId: string): TurnPlayout {
  return {
    turnId,
    playedMs: 0,
    offsets: { fast: 0, filler: 0, deep: 0 },
    texts: { fast: '', filler: '', deep: '' },
    complete: new Set(),
  };
}

/** The text the user really heard: each source cut at its last played frame (opener, filler, answer). */
export function spokenText(p: TurnPlayout): string {
  return AUDIO_SOURCES.map((s) => p.texts[s].slice(0, p.offsets[s]).trim())
    .filter((t) => t !== '')
    .join(' ');
}
