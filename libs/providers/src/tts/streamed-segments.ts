// Shared by the HTTP-streaming adapters (OpenAI, ElevenLabs over HTTP): the counterpart of `speakStream`
// (stream.ts) for providers whose audio streams in as a response body.
import { Framer, samplesForMs, silence, StreamResampler } from '@va/audio';
import { AsyncQueue, linkAbort } from '@va/stream';
import { ProviderError } from '../errors.js';
import type { SpeechChunk } from '../types.js';
import { drainChunks, HeldChunk } from './chunk-queue.js';
import { Pcm16Decoder } from './pcm16.js';
import { isSpeakable, segmentSentences, type SentenceSegmenterOptions } from './segmenter.js';

/** Opens one segment's audio: resolves when the response has started, with its body (raw PCM16 LE bytes). */
export type SegmentAudioStream = (text: string, signal: AbortSignal) => Promise<AsyncIterable<Uint8Array>>;

export interface StreamedSegmentsOptions extends SentenceSegmenterOptions {
  provider: string;
  /** Rate of the PCM the provider sends. */
  inputRate: number;
  /** Rate of the chunks yielded; resampled (as a stream) when it differs. */
  sampleRate: number;
  /** Time allowed from a request until its first audio bytes. */
  firstByteTimeoutMs: number;
  /** Chunk length, ms. Default 20. */
  chunkMs?: number;
  /** Turns whatever the request or the body read threw into a typed error. */
  toError: (err: unknown) => ProviderError;
}

const FIRST_BYTE_TIMEOUT = Symbol('first byte timeout');

/**
 * Like `speakStream`, but each segment's audio streams in as the provider sends it (a response body) instead of
 * arriving whole. Segments are requested one after another, independent of how fast chunks are consumed.
 * textOffset: every chunk of a segment reports the end of the segment before, its last chunk the segment's own
 * end. A final unspeakable segment becomes one silent chunk (the last textOffset reaches the text's length).
 * Abort or an early `return()`: the request in flight is cancelled and awaited, the iterable ends quietly; a
 * text source blocked in `next()` is left to the owner of the signal. Failures are thrown as the typed error.
 */
export async function* speakSegmentsStreamed(
  text: AsyncIterable<string>,
  signal: AbortSignal,
  open: SegmentAudioStream,
  opts: StreamedSegmentsOptions,
): AsyncGenerator<SpeechChunk, void, undefined> {
  if (signal.aborted) return;
  const link = linkAbort(signal);
  const ac = link.controller;
  const chunkMs = opts.chunkMs ?? 20;
  const out = new AsyncQueue<SpeechChunk>();
  const speaker = new SegmentSpeaker(open, opts, out, ac.signal);
  let inflight: Promise<unknown> = Promise.resolve();

  void (async () => {
    let start = 0; // end offset of the previous segment
    let spoke = false;
    for await (const seg of segmentSentences(text, opts)) {
      if (ac.signal.aborted) return;
      if (isSpeakable(seg.text)) {
        const one = speaker.speak(seg.text, start, seg.end);
        inflight = one.catch(() => undefined);
        if (await one) spoke = true;
      } else if (spoke) {
        out.push({ ...silence(chunkMs, opts.sampleRate), textOffset: seg.end });
      }
      start = seg.end;
    }
  })().then(
    () => out.end(),
    (err: unknown) => out.fail(err),
  );

  yield* drainChunks(out, link, async () => {
    ac.abort();
    await inflight; // the cancelled request settles within a moment: nothing outlives the iterable
    speaker.destroy();
  });
}

/** Requests one segment at a time and queues its audio as chunks while the response body streams in. */
class SegmentSpeaker {
  #resampler: StreamResampler | undefined;
  readonly #rate: number;
  readonly #frameSamples: number;

  constructor(
    private readonly open: SegmentAudioStream,
    private readonly opts: StreamedSegmentsOptions,
    private readonly out: AsyncQueue<SpeechChunk>,
    /** The whole call's: aborting it cancels the request in flight. */
    private readonly signal: AbortSignal,
  ) {
    this.#rate = opts.sampleRate;
    this.#frameSamples = samplesForMs(opts.chunkMs ?? 20, opts.sampleRate);
  }

  /**
   * Speaks `input`, the text from `start` to `end`; resolves true once its last chunk is queued, false when the
   * call was aborted or the provider sent no audio. Rejects with the typed error.
   */
  async speak(input: string, start: number, end: number): Promise<boolean> {
    if (this.#needsResampler() && !(await this.#createResampler())) return false;
    const req = new AbortController();
    const cancel = () => req.abort();
    this.signal.addEventListener('abort', cancel, { once: true });
    const timer = setTimeout(() => req.abort(FIRST_BYTE_TIMEOUT), this.opts.firstByteTimeoutMs);
    // Every chunk but the segment's last claims only the text before it; the last, the segment's end.
    const held = new HeldChunk(this.out);
    const hold = (samples: Int16Array) => held.hold({ samples, sampleRate: this.#rate, textOffset: start });
    try {
      const body = await this.open(input, req.signal);
      if (!(await this.#read(body, timer, hold))) return false;
      return held.release(end);
    } catch (err) {
      if (this.signal.aborted) return false;
      throw this.#typed(err, req.signal);
    } finally {
      clearTimeout(timer);
      this.signal.removeEventListener('abort', cancel);
    }
  }

  destroy(): void {
    this.#resampler?.destroy();
    this.#resampler = undefined;
  }

  /** The provider's rate is not ours and the resampler is yet to be made. */
  #needsResampler(): boolean {
    return this.opts.inputRate !== this.#rate && !this.#resampler;
  }

  /** Creates the resampler (on first use); false if the call was aborted meanwhile. */
  async #createResampler(): Promise<boolean> {
    const created = await StreamResampler.create(this.opts.inputRate, this.#rate);
    if (this.signal.aborted) {
      created.destroy();
      return false;
    }
    this.#resampler = created;
    return true;
  }

  /** Reads the body to its end as frames (the first bytes stop the timer); false if aborted meanwhile. */
  async #read(body: AsyncIterable<Uint8Array>, timer: NodeJS.Timeout, emit: (f: Int16Array) => void): Promise<boolean> {
    const framer = new Framer(this.#frameSamples);
    const decoder = new Pcm16Decoder();
    for await (const bytes of body) {
      if (this.signal.aborted) return false;
      if (bytes.length === 0) continue;
      clearTimeout(timer);
      const pcm = decoder.push(bytes);
      for (const f of framer.push(this.#resampler ? this.#resampler.push(pcm) : pcm)) emit(f);
    }
    const rest = framer.flush();
    if (rest) emit(rest);
    return true;
  }

  #typed(err: unknown, request: AbortSignal): ProviderError {
    if (request.reason === FIRST_BYTE_TIMEOUT) {
      const message = `no audio within ${this.opts.firstByteTimeoutMs} ms`;
      return new ProviderError(this.opts.provider, 'timeout', message, { cause: err });
    }
    return this.opts.toError(err);
  }
}
