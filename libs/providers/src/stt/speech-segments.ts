import { AsyncQueue } from '@va/stream';
import type { AudioChunk, TranscriptEvent } from '../types.js';
import type { SpeechGate } from './speech-gate.js';

/** Chunks a speech segment may hold while it waits for a decoder or for the worker, before input is paused. */
const MAX_SEGMENT_BACKLOG = 8;

/** Recognises one segment's audio; `stop` aborts when the transcription ends, however it ends. */
export type DecodeSegment = (audio: AsyncIterable<AudioChunk>, stop: AbortSignal) => AsyncIterable<TranscriptEvent>;

/**
 * One transcription read through a SpeechGate: each stretch with sound in it becomes a segment given to `decode`.
 * Segments run one after another, so events stay in order; a segment's audio waits in a short backlog meanwhile.
 */
export class SegmentedTranscription {
  private readonly events = new AsyncQueue<TranscriptEvent>();
  // Ends this transcription's segments however it ends (abort, close(), input error, consumer gone).
  private readonly done = new AbortController();
  private readonly stop: AbortSignal;
  /** The last segment's run (never rejects): the next one starts after it. */
  private previous: Promise<void> = Promise.resolve();
  /** The segment the gate is open for now. */
  private segment: SegmentAudio | undefined;

  constructor(
    private readonly gate: SpeechGate,
    private readonly decode: DecodeSegment,
    signals: AbortSignal[],
  ) {
    this.stop = AbortSignal.any([...signals, this.done.signal]);
  }

  async *run(audio: AsyncIterable<AudioChunk>): AsyncGenerator<TranscriptEvent> {
    const cancel = () => this.cancel();
    this.stop.addEventListener('abort', cancel, { once: true });
    try {
      void this.pump(audio);
      yield* this.events;
    } finally {
      this.stop.removeEventListener('abort', cancel);
      this.done.abort();
      this.cancel();
      await this.previous;
    }
  }

  private cancel(): void {
    this.events.cancel();
    this.segment?.cancel();
  }

  private async pump(audio: AsyncIterable<AudioChunk>): Promise<void> {
    try {
      for await (const chunk of audio) {
        if (this.stop.aborted) return;
        const { pass, closed } = this.gate.push(chunk);
        if (pass.length === 0) continue;
        this.segment ??= this.startSegment();
        const current = this.segment;
        current.push(pass);
        if (closed) {
          current.end();
          this.segment = undefined;
        }
        // A decoder slower than the input (or none free yet) pauses the reading; the caller's queue bounds the rest.
        await current.roomFor(MAX_SEGMENT_BACKLOG, this.stop);
      }
      this.segment?.end();
      this.segment = undefined;
      await this.previous;
      this.events.end();
    } catch (err) {
      this.events.fail(err);
    }
  }

  /** A new segment, decoded once the one before it is done; its events go out in turn, its failure fails all. */
  private startSegment(): SegmentAudio {
    const segment = new SegmentAudio();
    const after = this.previous;
    const run = (async () => {
      await after;
      for await (const event of this.decode(segment.chunks(), this.stop)) this.events.push(event);
    })();
    this.previous = run.catch(() => {});
    run.catch((err: unknown) => {
      if (!this.stop.aborted) this.events.fail(err);
    });
    return segment;
  }
}

/** The audio of one speech segment on its way to the decoder, counted, so a slow decoder can pause the reader. */
class SegmentAudio {
  private readonly input = new AsyncQueue<AudioChunk>();
  /** Chunks pushed and not yet pulled by the decoder. */
  private backlog = 0;
  private drained: (() => void) | undefined;

  push(chunks: readonly AudioChunk[]): void {
    for (const chunk of chunks) this.input.push(chunk);
    this.backlog += chunks.length;
  }

  end(): void {
    this.input.end();
  }

  cancel(): void {
    this.input.cancel();
    this.wake();
  }

  /**
   * Resolves once at most `max` chunks wait, or `stop` aborted — which wakes the wait itself: a segment already
   * closed is no longer the one `cancel()` reaches, and its decoder, stopped, pulls nothing more.
   */
  async roomFor(max: number, stop: AbortSignal): Promise<void> {
    if (this.backlog <= max) return;
    const onStop = () => this.wake();
    stop.addEventListener('abort', onStop, { once: true });
    try {
      while (this.backlog > max && !stop.aborted) {
        await new Promise<void>((resolve) => (this.drained = resolve));
      }
    } finally {
      stop.removeEventListener('abort', onStop);
    }
  }

  /** What the decoder pulls from; each pull makes room in the backlog. */
  async *chunks(): AsyncGenerator<AudioChunk> {
    for await (const chunk of this.input) {
      this.backlog--;
      this.wake();
      yield chunk;
    }
  }

  private wake(): void {
    const wake = this.drained;
    this.drained = undefined;
    wake?.();
  }
}
