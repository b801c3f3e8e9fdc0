import { RecentMap } from '@va/actor';
import { AUDIO_SOURCES, type AudioFrame, type AudioSource } from '@va/protocol';

/** One frame of agent audio waiting to be played, with the words it speaks. */
export interface OutFrame {
  turnId: string;
  source: AudioSource;
  samples: Int16Array;
  text: string;
  /** How far into its source's text the frame's audio goes (undefined for a filler). */
  textOffset?: number;
}

/** What the user has heard of one agent turn so far. */
export interface TurnPlayout {
  turnId: string;
  playedMs: number;
  /** The words of each source's frames played so far (each frame carries its own: see `AudioFrame.text`). */
  heard: Record<AudioSource, string>;
  /** Sources whose every frame has been received (tts's `speech`). */
  complete: Set<AudioSource>;
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
  return { turnId, playedMs: 0, heard: { fast: '', filler: '', deep: '' }, complete: new Set() };
}

/** The text the user really heard: the words of the frames played, opener, filler and answer. */
export function spokenText(p: TurnPlayout): string {
  return AUDIO_SOURCES.map((s) => p.heard[s].trim())
    .filter((t) => t !== '')
    .join(' ');
}

/**
 * Which agent turns may not play now: a preview (preemptive generation) until `end` commits it, a turn the user
 * barged in on until words decide. A preview's audio and words are kept meanwhile.
 */
export class PlayoutHolds {
  private readonly previews = new Map<string, TurnPlayout>();
  /** Turn ids whose frames wait in the buffer (the buffer's `next` skips them). */
  readonly held = new Set<string>();

  preview(turnId: string): void {
    this.previews.set(turnId, newTurnPlayout(turnId));
    this.held.add(turnId);
  }

  previewOf(turnId: string): TurnPlayout | undefined {
    return this.previews.get(turnId);
  }

  get previewIds(): string[] {
    return [...this.previews.keys()];
  }

  /** The turn is committed: its preview's playout (what it has so far) or a fresh one; other previews are stale. */
  commit(turnId: string): TurnPlayout {
    const playout = this.previews.get(turnId) ?? newTurnPlayout(turnId);
    this.previews.delete(turnId);
    this.held.delete(turnId);
    return playout;
  }

  /** Forgets a preview that will not be committed; false if `turnId` was none. */
  drop(turnId: string): boolean {
    if (!this.previews.delete(turnId)) return false;
    this.held.delete(turnId);
    return true;
  }

  pause(turnId: string): void {
    this.held.add(turnId);
  }

  /** Plays a paused turn on; false if it was not held. */
  resume(turnId: string): boolean {
    return this.held.delete(turnId);
  }
}

/** Turns whose arrived text is remembered at most (a session has one or two in flight). */
const ARRIVED_TURNS = 16;

/**
 * How far each turn's agent text has arrived (the highest `textOffset` per turn and responder). A tts instance
 * that took a turn over from an older record of its predecessor's progress speaks some words again: those frames
 * are dropped, and the words of its first new frame cut to what is new — so the user hears each word once.
 */
export class ArrivedText {
  /** Per turn and responder (two keys a turn). */
  private readonly reached = new RecentMap<string, number>(ARRIVED_TURNS * 2);

  /** A turn heard up to `heardTo` elsewhere (a dead gateway): audio before that repeats it. */
  seed(turnId: string, heardTo: Partial<Record<AudioSource, number>>): void {
    for (const [source, offset] of Object.entries(heardTo)) this.reached.set(`${turnId}/${source}`, offset);
  }

  /** The words `frame` brings that had not arrived yet (maybe ''), or undefined when it repeats arrived audio. */
  admit(frame: Pick<AudioFrame, 'turnId' | 'source' | 'textOffset' | 'text'>): string | undefined {
    const text = frame.text ?? '';
    if (frame.source === 'filler' || frame.textOffset === undefined) return text;
    const key = `${frame.turnId}/${frame.source}`;
    const top = this.reached.get(key);
    if (top === undefined) {
      this.reached.set(key, frame.textOffset);
      return text;
    }
    // A frame of the same stream at the same offset brings no words; one that claims words there repeats them.
    if (frame.textOffset < top || (frame.textOffset === top && text !== '')) return undefined;
    this.reached.set(key, frame.textOffset);
    const fresh = frame.textOffset - top;
    return text.length > fresh ? text.slice(text.length - fresh) : text;
  }
}
