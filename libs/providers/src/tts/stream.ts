import { frames, silence } from '@va/audio';
import type { SpeechChunk } from '../types.js';
import { isSpeakable, segmentSentences, type TextSegment, type SentenceSegmenterOptions } from './segmenter.js';
import { ABORTED, AsyncQueue, linkAbort } from '@va/stream';

/** Synthesizes one segment's text to mono PCM16 at the adapter's rate; rejects on failure or abort. */
export type SegmentSynth = (text: string, index: number, signal: AbortSignal) => Promise<Int16Array>;

export interface SpeakStreamOptions extends SentenceSegmenterOptions {
  sampleRate: number;
  /** Chunk length, ms. Default 20 (the wire frame). */
  chunkMs?: number;
}

interface Job {
  seg: TextSegment;
  audio: Promise<Int16Array>;
}

/**
 * The pipeline every TTS adapter shares: text deltas → segments → synthesis → 20 ms chunks.
 *
 * - Segments are synthesized one after another as soon as the segmenter completes them, independent of how
 *   fast chunks are consumed, so segment N+1 is being made while segment N is still being read.
 * - textOffset: the last chunk of a segment carries the segment's end offset; earlier chunks a share of the
 *   segment's characters proportional to the share of its audio played (linear interpolation: flite gives no word
 *   timings). Non-decreasing by construction.
 * - A final segment with nothing to say (trailing "..." or spaces) becomes one silent chunk, so the last
 *   textOffset still reaches the text's length; with no audio before it, it is dropped (empty input → no chunks).
 * - Abort (or the consumer stopping early): the iterable ends at once without throwing, in-flight synthesis is
 *   cancelled and awaited (a child process is gone when the iterable has ended). The text source is not read
 *   any further; a source blocked in `next()` is left to the owner of the same signal.
 * - A failure of synthesis or of the text source is thrown from the iterable.
 */
export async function* speakStream(
  text: AsyncIterable<string>,
  signal: AbortSignal,
  synth: SegmentSynth,
  opts: SpeakStreamOptions,
): AsyncGenerator<SpeechChunk, void, undefined> {
  if (signal.aborted) return;
  const link = linkAbort(signal);
  const { controller: ac, aborted } = link;
  const jobs = new AsyncQueue<Job>();
  let last: Promise<unknown> = Promise.resolve(); // the newest synthesis; each one starts when the one before ends

  void (async () => {
    let index = 0;
    for await (const seg of segmentSentences(text, opts)) {
      if (ac.signal.aborted) return;
      const i = index++;
      const audio = last.then(() => {
        ac.signal.throwIfAborted(); // queued behind a synthesis that was cancelled: do not start
        return isSpeakable(seg.text) ? synth(seg.text, i, ac.signal) : new Int16Array(0);
      });
      last = audio.catch(() => undefined); // a rejection is reported by the consumer, not as unhandled
      jobs.push({ seg, audio });
    }
  })().then(
    () => jobs.end(),
    (err: unknown) => jobs.fail(err),
  );

  try {
    let start = 0; // end offset of the previous segment
    let spoke = false;
    for (;;) {
      const next = await Promise.race([jobs.next(), aborted]);
      if (next === ABORTED || next.done) return;
      const { seg, audio } = next.value;
      const samples = await Promise.race([audio, aborted]);
      if (samples === ABORTED) return;
      if (samples.length === 0) {
        if (spoke) yield { ...silence(opts.chunkMs ?? 20, opts.sampleRate), textOffset: seg.end };
      } else {
        let played = 0;
        for (const f of frames({ samples, sampleRate: opts.sampleRate }, opts.chunkMs ?? 20)) {
          played += f.samples.length;
          const textOffset = start + Math.floor(((seg.end - start) * played) / samples.length);
          yield { ...f, textOffset };
          if (ac.signal.aborted) return;
        }
        spoke = true;
      }
      start = seg.end;
    }
  } catch (err) {
    if (!ac.signal.aborted) throw err;
  } finally {
    link.unlink();
    ac.abort();
    await last; // cancelled synthesis settles within a moment: nothing outlives the iterable
  }
}
