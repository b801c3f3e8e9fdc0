import { untilAborted, type AsyncQueue, type LinkedAbort } from '@va/stream';
import type { SpeechChunk } from '../types.js';

/**
 * Holds back the newest chunk until the next one shows it was not the last: the last chunk of a segment (or of
 * the whole reply) reports a textOffset that is only known once its audio has ended.
 */
export class HeldChunk {
  #held: SpeechChunk | undefined;

  constructor(private readonly out: { push(chunk: SpeechChunk): void }) {}

  /** Passes on the chunk held so far and holds this one instead. */
  hold(chunk: SpeechChunk): void {
    if (this.#held) this.out.push(this.#held);
    this.#held = chunk;
  }

  /** Passes on the held chunk as the last, with `textOffset`; false when nothing was held. */
  release(textOffset: number): boolean {
    const last = this.#held;
    this.#held = undefined;
    if (!last) return false;
    this.out.push({ ...last, textOffset });
    return true;
  }
}

/**
 * The consuming end of the streaming adapters: yields what the producers queue until the queue ends or the
 * call aborts. After an abort the iterable ends quietly (a failure caused by the abort is not thrown); a failure
 * before it is. `cleanup` runs (and is awaited) in every case, after the caller's signal is let go.
 */
export async function* drainChunks(
  out: AsyncQueue<SpeechChunk>,
  link: LinkedAbort,
  cleanup: () => void | Promise<void>,
): AsyncGenerator<SpeechChunk, void, undefined> {
  try {
    yield* untilAborted(out, link);
  } catch (err) {
    if (!link.controller.signal.aborted) throw err;
  } finally {
    link.unlink();
    const settling = cleanup();
    if (settling) await settling;
  }
}
