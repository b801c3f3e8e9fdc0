import { dither } from '@va/audio';
import { AsyncQueue } from '@va/stream';
import type { AudioChunk, TranscriptEvent } from '../types.js';
import type { DecoderWorker } from './decoder-worker.js';
import { resampledInput } from './resampled-input.js';
import { DECODER_SAMPLE_RATE, type FromWorker } from './worker-protocol.js';

/** Audio messages the worker may have queued: bounds memory and makes a slow decoder slow the reader down. */
const MAX_IN_FLIGHT = 4;

/** Run ids are unique in the process: a pooled decoder serves many instances, and a late message must never match. */
let lastRun = 0;
let ditherSeed = 1;
const ZERO_CHECK_SAMPLES = DECODER_SAMPLE_RATE / 100;

/** One segment on a leased decoder: audio to the worker under flow control, its events back. */
export async function* recognise(
  worker: DecoderWorker,
  audio: AsyncIterable<AudioChunk>,
  signal: AbortSignal,
): AsyncGenerator<TranscriptEvent> {
  if (worker.failure) throw worker.failure;
  const run = new DecoderRun(worker);
  const stop = () => run.stop();
  signal.addEventListener('abort', stop, { once: true });
  worker.ref();
  try {
    worker.post({ type: 'start', run: run.id });
    // Not awaited: the input may never end (a live stream that is aborted); feed() reports its own errors.
    void run.feed(audio);
    yield* run.events;
  } finally {
    signal.removeEventListener('abort', stop);
    // Early return by the consumer, abort or failure: make sure the worker stops this run.
    run.stop();
    worker.onMessage = undefined;
    worker.onFailure = undefined;
    worker.unref();
  }
}

/**
 * One run on a decoder worker: the audio goes out with at most MAX_IN_FLIGHT messages unanswered (a credit per
 * message, given back by the worker's `consumed`), and the run's events come back through `events`.
 */
class DecoderRun {
  readonly id = ++lastRun;
  readonly events = new AsyncQueue<TranscriptEvent>();
  /** Neither `end` nor `abort` has been sent for this run yet. */
  private open = true;
  private credits = MAX_IN_FLIGHT;
  private creditWaiter: (() => void) | undefined;

  constructor(private readonly worker: DecoderWorker) {
    worker.onMessage = (msg) => this.received(msg);
    worker.onFailure = (err) => {
      this.events.fail(err);
      this.open = false;
      this.wakeFeed();
    };
  }

  /**
   * Abort ends the iterable at once; the worker ends the utterance after the (at most MAX_IN_FLIGHT) audio
   * messages it has queued, and the run id keeps its late messages out of the next transcription.
   */
  stop(): void {
    this.close('abort');
    this.events.cancel();
  }

  /** Sends the audio (resampled to the decoder's rate) as credits allow, then `end`; `abort` if the input fails. */
  async feed(audio: AsyncIterable<AudioChunk>): Promise<void> {
    try {
      for await (const { samples, startMs, endMs } of resampledInput(audio, DECODER_SAMPLE_RATE)) {
        if (!this.open) break;
        while (this.credits === 0 && this.open) await new Promise<void>((resolve) => (this.creditWaiter = resolve));
        if (!this.open) break;
        this.credits--;
        this.worker.post({ type: 'audio', run: this.id, samples: prepare(samples), startMs, endMs });
      }
      this.close('end');
    } catch (err) {
      this.events.fail(err);
      this.close('abort');
    }
  }

  private received(msg: FromWorker): void {
    if (!('run' in msg) || msg.run !== this.id) return;
    if (msg.type === 'event') this.events.push(msg.event);
    else if (msg.type === 'consumed') {
      this.credits++;
      this.wakeFeed();
    } else if (msg.type === 'done') this.events.end();
  }

  private close(kind: 'end' | 'abort'): void {
    if (!this.open) return;
    this.open = false;
    this.wakeFeed();
    if (!this.worker.failure) this.worker.post({ type: kind, run: this.id });
  }

  private wakeFeed(): void {
    const wake = this.creditWaiter;
    this.creditWaiter = undefined;
    wake?.();
  }
}

/**
 * Copies the samples for the worker (a view on a bigger buffer would clone all of it) and replaces 10 ms windows
 * of exact digital zero with ±2 LSB dither: pocketsphinx's noise/cepstral normalisation misbehaves on true zeros,
 * and a real microphone never produces them.
 */
function prepare(samples: Int16Array): Int16Array {
  const out = samples.slice();
  for (let at = 0; at < out.length; at += ZERO_CHECK_SAMPLES) {
    const window = out.subarray(at, at + ZERO_CHECK_SAMPLES);
    if (window.every((s) => s === 0)) window.set(dither(window, 2, ditherSeed++));
  }
  return out;
}
