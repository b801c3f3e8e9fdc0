import type { listen } from '@deepgram/sdk';
import type { TranscriptEvent } from '../types.js';

/** Maps Deepgram's stream time (seconds from the first audio byte of one socket) to the session's audio clock. */
export class StreamClock {
  /** Audio sent on this socket, ms. */
  sentMs = 0;
  /** Where the input's clock jumped (a gap, audio dropped while reconnecting): stream ms → session ms. */
  private readonly marks: { streamMs: number; tsMs: number }[] = [];

  /** Records a chunk about to be sent: its session time and its length. */
  sent(tsMs: number, durMs: number): void {
    const last = this.marks.at(-1);
    if (!last || Math.abs(last.tsMs + (this.sentMs - last.streamMs) - tsMs) > 5) {
      this.marks.push({ streamMs: this.sentMs, tsMs });
      if (this.marks.length > 1000) this.marks.splice(0, this.marks.length - 1000);
    }
    this.sentMs += durMs;
  }

  toSession(streamSec: number): number {
    const ms = streamSec * 1000;
    let mark = this.marks[0];
    if (!mark) return ms;
    for (let i = this.marks.length - 1; i >= 0; i--) {
      if (this.marks[i]!.streamMs <= ms) {
        mark = this.marks[i]!;
        break;
      }
    }
    return Math.round(mark.tsMs + (ms - mark.streamMs));
  }
}

/** What one result says: its transcript and its timed words. */
interface Heard {
  text: string;
  words: listen.ListenV1Results.Channel.Alternatives.Item.Words.Item[];
}

/**
 * What Deepgram's results on one socket mean as TranscriptEvents (the mapping is in DeepgramSTT's comment): each
 * is_final segment is a final, the partials before it are partials, and a partial left without a final (an
 * UtteranceEnd, a drop, the end of the stream) can be turned into one. Times go through this socket's clock.
 */
export class SocketTranscript {
  /** The audio sent on this socket, for its times. */
  readonly clock = new StreamClock();
  /** The last partial not yet covered by a final, on the current link. */
  private pending: (TranscriptEvent & { endSec: number }) | undefined;
  /** Stream time (s) up to which a final was made from a partial: words of a later is_final before it repeat it. */
  private synthesizedUpToSec = -1;

  constructor(private readonly emit: (event: TranscriptEvent) => void) {}

  /** A `Results` message: a partial, or a segment's final (only its words not already said). */
  results(msg: listen.ListenV1Results): void {
    const alt = msg.channel?.alternatives?.[0];
    let heard: Heard = { text: (alt?.transcript ?? '').trim(), words: alt?.words ?? [] };
    if (msg.is_final) heard = this.settle(heard);
    const { text, words } = heard;
    if (!text) return;
    const startSec = words.length ? words[0]!.start : (msg.start ?? 0);
    const endSec = words.length ? words.at(-1)!.end : (msg.start ?? 0) + (msg.duration ?? 0);
    const startMs = this.clock.toSession(startSec);
    const event: TranscriptEvent = {
      text,
      final: msg.is_final === true,
      stable: msg.is_final === true,
      confidence: Math.min(1, Math.max(0, alt?.confidence ?? 0)),
      startMs,
      endMs: Math.max(startMs, this.clock.toSession(endSec)),
    };
    if (!event.final) this.pending = { ...event, endSec };
    this.emit(event);
  }

  /** Emits the partial that no is_final covered as the utterance's final (see the mapping above). */
  flushPending(): void {
    const p = this.pending;
    if (!p) return;
    this.pending = undefined;
    this.synthesizedUpToSec = p.endSec;
    const { endSec: _, ...event } = p;
    this.emit({ ...event, final: true, stable: true });
  }

  /** An is_final's words, less those a final made from a partial already said. */
  private settle(heard: Heard): Heard {
    // This segment is settled: whatever partial was showing is replaced by it (or was silence).
    this.pending = undefined;
    const upTo = this.synthesizedUpToSec;
    this.synthesizedUpToSec = -1;
    if (upTo < 0 || !heard.words.length) return heard;
    // An UtteranceEnd already turned a partial of these words into a final: keep only the words after it.
    const fresh = heard.words.filter((w) => w.start >= upTo - 0.01);
    if (fresh.length === heard.words.length) return heard;
    return { words: fresh, text: fresh.map((w) => w.punctuated_word ?? w.word).join(' ') };
  }
}
