import { frames } from '@va/audio';
import type { SpeechChunk } from '../types.js';
import type { CharTimes } from './elevenlabs-wire.js';

export interface SpokenOffsetsOptions {
  sampleRate: number;
  /** Chunk length, ms. */
  chunkMs: number;
  /** Pace assumed when the provider sends no alignment at all. */
  msPerChar: number;
}

/**
 * textOffset for the `stream-input` socket's audio. With the alignment the provider sends with each audio
 * message: the characters whose timing ends within the audio played so far, matched back to the input
 * (whitespace-tolerant, UTF-16 offsets). Without any alignment, a pace estimate snapped down to the sentence ends
 * flushed so far. Non-decreasing.
 */
export class SpokenOffsets {
  readonly #sent = new SentText();
  readonly #flushedEnds: number[] = [];
  #aligned = false; // some message carried alignment
  #spoken = 0; // textOffset reported so far
  #playedMs = 0;

  constructor(private readonly opts: SpokenOffsetsOptions) {}

  /** `piece` of the input, starting at input offset `inputStart`, went out to the provider. */
  sent(piece: string, inputStart: number): void {
    this.#sent.append(piece, inputStart);
  }

  /** A flush went out at the sentence end `end` (input offset). */
  flushed(end: number): void {
    this.#flushedEnds.push(end);
  }

  get anyFlushed(): boolean {
    return this.#flushedEnds.length > 0;
  }

  /** One audio message's PCM as chunks, each with the textOffset spoken once it has played. */
  chunks(pcm: Int16Array, al: CharTimes | undefined): SpeechChunk[] {
    const { sampleRate: rate, chunkMs } = this.opts;
    const timed = al ? this.#charEnds(al, pcm.length) : undefined;
    const parts = frames({ samples: pcm, sampleRate: rate }, chunkMs);
    let t = 0;
    return parts.map((f, k) => {
      t += (f.samples.length * 1000) / rate;
      this.#playedMs += (f.samples.length * 1000) / rate;
      if (timed) this.#reachAligned(timed, t, k === parts.length - 1);
      else if (!this.#aligned) this.#reachEstimated();
      return { samples: f.samples, sampleRate: rate, textOffset: this.#spoken };
    });
  }

  /** Each aligned character's input offset, and when its speech ends within the message's audio (ms). */
  #charEnds(al: CharTimes, samples: number): { offs: number[]; ends: number[] } {
    this.#aligned = true;
    const msgMs = (samples * 1000) / this.opts.sampleRate;
    // Times are relative to the chunk (SDK docs); should they count from the stream's start, rebase them.
    const rebase = (al.starts[0] ?? 0) > msgMs ? al.starts[0]! : 0;
    const offs: number[] = [];
    const ends: number[] = [];
    al.chars.forEach((c, i) => {
      offs.push(this.#sent.advance(c));
      ends.push((al.starts[i] ?? 0) - rebase + (al.durations[i] ?? 0));
    });
    return { offs, ends };
  }

  /** The characters spoken by `t` ms into the message; all of them at its last chunk. */
  #reachAligned({ offs, ends }: { offs: number[]; ends: number[] }, t: number, last: boolean): void {
    for (let i = 0; i < ends.length; i++)
      if (last || ends[i]! <= t + 0.5) this.#spoken = Math.max(this.#spoken, offs[i]!);
  }

  /** No timings at all: a pace estimate, snapped down to a sentence end already flushed. */
  #reachEstimated(): void {
    const reached = this.#sent.inputOffsetAt(Math.floor(this.#playedMs / this.opts.msPerChar));
    for (const e of this.#flushedEnds) if (e <= reached) this.#spoken = Math.max(this.#spoken, e);
  }
}

/**
 * The text sent to the provider (the input, less segments with nothing to say) with, for each of its UTF-16
 * units, the input offset just past it; and a cursor that follows the provider's alignment characters through it.
 */
export class SentText {
  private sent = '';
  private ends: number[] = [];
  private cursor = 0;
  private offset = 0;

  append(piece: string, inputStart: number): void {
    this.sent += piece;
    for (let i = 1; i <= piece.length; i++) this.ends.push(inputStart + i);
  }

  /** Input offset just past the first `n` characters sent. */
  inputOffsetAt(n: number): number {
    if (n <= 0 || this.ends.length === 0) return 0;
    return this.ends[Math.min(n, this.ends.length) - 1]!;
  }

  /** Moves past one aligned character; returns the input offset spoken once it has been (non-decreasing). */
  advance(c: string): number {
    if (!c) return this.offset;
    const s = this.sent;
    let at = s.startsWith(c, this.cursor) ? this.cursor : -1;
    if (at < 0) {
      if (/^\s+$/.test(c)) return this.offset; // whitespace the provider added
      // Whitespace the provider dropped, or a character or two it changed: look a little ahead, no further.
      for (let q = this.cursor + 1; q < Math.min(s.length, this.cursor + 6); q++) {
        if (s.startsWith(c, q)) {
          at = q;
          break;
        }
      }
      if (at < 0) return this.offset;
    }
    this.cursor = at + c.length;
    this.offset = Math.max(this.offset, this.ends[this.cursor - 1] ?? this.offset);
    return this.offset;
  }
}
