import { Worker } from 'node:worker_threads';
import { dither, StreamResampler } from '@va/audio';
import type { AudioChunk, STT, TranscriptEvent } from '../types.js';
import { Channel } from './channel.js';
import { ProviderError } from '../errors.js';
import {
  DECODER_SAMPLE_RATE,
  DEFAULT_MODEL_DIR,
  type DecoderWorkerData,
  type FromWorker,
  type ToWorker,
} from './worker-protocol.js';

export interface LocalSTTOptions {
  /** Directory with `en-us/`, `en-us.lm.bin`, `cmudict-en-us.dict`. Default: Debian's pocketsphinx-en-us. */
  modelDir?: string;
}

/** Audio messages the worker may have queued: bounds memory and makes a slow decoder slow the reader down. */
const MAX_IN_FLIGHT = 4;
/** How long close() waits for the worker to free the decoder before terminating it. */
const CLOSE_GRACE_MS = 2000;

/**
 * Decoders loaded ahead, one per model directory, when `keepSpareDecoder(true)`: a new session takes the spare
 * (its model already loaded) instead of loading one while the session opens (≈ 0.3–0.8 s here), and the next
 * spare loads in the background. Off by default: only the stt service, which opens sessions all day, wants it.
 */
let keepSpare = false;
const spares = new Map<string, DecoderWorker>();

/** Keep one loaded decoder ready for the next session (the stt service turns this on). */
export function keepSpareDecoder(on: boolean): void {
  keepSpare = on;
  if (!on) {
    for (const spare of spares.values()) void spare.close();
    spares.clear();
  }
}

/**
 * Starts loading the spare decoder (service start), so even the first session finds one. Resolves once it is
 * loaded, or at once when spares are off; a spare that fails to load is replaced on the next take.
 */
export async function preloadDecoder(modelDir = DEFAULT_MODEL_DIR): Promise<void> {
  if (!keepSpare) return;
  let spare = spares.get(modelDir);
  if (!spare) spares.set(modelDir, (spare = new DecoderWorker({ modelDir })));
  await spare.ready.then(
    () => undefined,
    () => undefined,
  );
}

/** A decoder for a new instance: the spare if it is healthy, else a new one; then the next spare starts loading. */
function takeDecoder(modelDir: string): { worker: DecoderWorker; spare: boolean } {
  const spare = spares.get(modelDir);
  spares.delete(modelDir);
  if (spare?.failure) void spare.close();
  const usable = spare !== undefined && !spare.failure;
  const worker = usable ? spare : new DecoderWorker({ modelDir });
  void preloadDecoder(modelDir);
  return { worker, spare: usable };
}

/**
 * Offline STT: pocketsphinx (en-us) in a worker thread. The model loads once per instance (≈ 0.3 s, at create())
 * and serves every transcription after it; transcriptions on one instance run one after another (a second call
 * waits until the first has ended), so a service keeps one instance per concurrent session. close() frees it.
 */
export class LocalSTT implements STT {
  readonly provider = 'local';
  readonly sampleRate = DECODER_SAMPLE_RATE;
  /** How long the current decoder's model took to load, ms. */
  modelLoadMs: number | undefined;
  /** The current decoder was the preloaded spare (its model loaded before this instance needed it). */
  fromSpare = false;

  private worker: DecoderWorker | undefined;
  private turn: Promise<void> = Promise.resolve();
  private runs = 0;
  private closed = false;
  private readonly modelDir: string;

  constructor(opts: LocalSTTOptions = {}) {
    this.modelDir = opts.modelDir ?? DEFAULT_MODEL_DIR;
  }

  /** Creates an instance with its model loaded, so the first utterance does not pay for it. Throws if it cannot load. */
  static async create(opts: LocalSTTOptions = {}): Promise<LocalSTT> {
    const stt = new LocalSTT(opts);
    await stt.decoder();
    return stt;
  }

  async *transcribe(audio: AsyncIterable<AudioChunk>, signal: AbortSignal): AsyncGenerator<TranscriptEvent> {
    const previous = this.turn;
    let release!: () => void;
    this.turn = new Promise((resolve) => (release = resolve));
    try {
      await previous;
      if (signal.aborted) return;
      yield* this.stream(await this.decoder(), audio, signal);
    } finally {
      release();
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const worker = this.worker;
    this.worker = undefined;
    await worker?.close();
  }

  /** The decoder worker: started (and its model loaded) on first use, and again after a worker failed. */
  private async decoder(): Promise<DecoderWorker> {
    if (this.closed) throw new ProviderError('local', 'connection', 'local STT: closed');
    if (!this.worker || this.worker.failure) {
      const taken = takeDecoder(this.modelDir);
      this.worker = taken.worker;
      this.fromSpare = taken.spare;
    }
    const worker = this.worker;
    this.modelLoadMs = await worker.ready;
    return worker;
  }

  private async *stream(
    worker: DecoderWorker,
    audio: AsyncIterable<AudioChunk>,
    signal: AbortSignal,
  ): AsyncGenerator<TranscriptEvent> {
    if (worker.failure) throw worker.failure;
    const run = ++this.runs;
    const events = new Channel<TranscriptEvent>();
    /** Neither `end` nor `abort` has been sent for this run yet. */
    let open = true;
    let credits = MAX_IN_FLIGHT;
    let creditWaiter: (() => void) | undefined;
    const wakePump = () => {
      const wake = creditWaiter;
      creditWaiter = undefined;
      wake?.();
    };
    const closeRun = (kind: 'end' | 'abort') => {
      if (!open) return;
      open = false;
      wakePump();
      if (!worker.failure) worker.post({ type: kind, run });
    };
    // Abort ends the iterable at once; the worker ends the utterance after the (at most MAX_IN_FLIGHT) audio
    // messages it has queued, and the run id keeps its late messages out of the next transcription.
    const stop = () => {
      closeRun('abort');
      events.cancel();
    };

    worker.onMessage = (msg) => {
      if (!('run' in msg) || msg.run !== run) return;
      if (msg.type === 'event') events.push(msg.event);
      else if (msg.type === 'consumed') {
        credits++;
        wakePump();
      } else if (msg.type === 'done') events.close();
    };
    worker.onFailure = (err) => {
      events.fail(err);
      open = false;
      wakePump();
    };

    const pump = async () => {
      let resampler: StreamResampler | undefined;
      let nextMs = 0;
      try {
        for await (const chunk of audio) {
          if (!open) break;
          const startMs = chunk.tsMs ?? nextMs;
          const endMs = startMs + (chunk.samples.length * 1000) / chunk.sampleRate;
          nextMs = endMs;
          let samples = chunk.samples;
          if (chunk.sampleRate !== DECODER_SAMPLE_RATE) {
            if (resampler?.fromRate !== chunk.sampleRate) {
              resampler?.destroy();
              resampler = await StreamResampler.create(chunk.sampleRate, DECODER_SAMPLE_RATE);
            }
            samples = resampler.push(samples);
          }
          if (samples.length === 0) continue;
          while (credits === 0 && open) await new Promise<void>((resolve) => (creditWaiter = resolve));
          if (!open) break;
          credits--;
          worker.post({ type: 'audio', run, samples: prepare(samples), startMs, endMs });
        }
        closeRun('end');
      } catch (err) {
        events.fail(err);
        closeRun('abort');
      } finally {
        resampler?.destroy();
      }
    };

    signal.addEventListener('abort', stop, { once: true });
    worker.ref();
    try {
      worker.post({ type: 'start', run });
      // Not awaited: the input may never end (a live stream that is aborted); pump() reports its own errors.
      void pump();
      yield* events;
    } finally {
      signal.removeEventListener('abort', stop);
      // Early return by the consumer, abort or failure: make sure the worker stops this run.
      stop();
      worker.onMessage = undefined;
      worker.onFailure = undefined;
      worker.unref();
    }
  }
}

let ditherSeed = 1;
const ZERO_CHECK_SAMPLES = DECODER_SAMPLE_RATE / 100;

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

/** The worker thread holding one loaded decoder, with its lifecycle turned into promises and callbacks. */
class DecoderWorker {
  /** Resolves with the model load time, ms; rejects if the model cannot load. */
  readonly ready: Promise<number>;
  /** Messages of the transcription running now. */
  onMessage: ((msg: FromWorker) => void) | undefined;
  /** Called when the worker fails while a transcription runs. */
  onFailure: ((err: Error) => void) | undefined;
  /** Set once the worker is unusable (failed, exited or closed). */
  failure: Error | undefined;

  private readonly worker: Worker;
  private readonly exited: Promise<void>;
  private rejectReady: (err: Error) => void = () => {};

  constructor(data: DecoderWorkerData) {
    this.worker = spawnDecoderWorker(data);
    // An idle decoder must not keep the process alive; a running transcription refs it.
    this.worker.unref();
    this.ready = new Promise<number>((resolve, reject) => {
      this.rejectReady = reject;
      this.worker.on('message', (msg: FromWorker) => {
        if (msg.type === 'ready') resolve(msg.loadMs);
        else if (msg.type === 'error') this.fail(new ProviderError('local', 'server', `local STT: ${msg.message}`));
        else this.onMessage?.(msg);
      });
    });
    this.ready.catch(() => {}); // the rejection is delivered to whoever awaits ready; never unhandled
    this.worker.on('error', (err) =>
      this.fail(new ProviderError('local', 'server', `local STT: decoder worker crashed: ${err.message}`)),
    );
    this.exited = new Promise((resolve) =>
      this.worker.once('exit', (code) => {
        this.fail(new ProviderError('local', 'server', `local STT: decoder worker exited (code ${code})`));
        resolve();
      }),
    );
  }

  post(msg: ToWorker): void {
    this.worker.postMessage(msg);
  }

  ref(): void {
    this.worker.ref();
  }

  unref(): void {
    this.worker.unref();
  }

  /** Frees the decoder (in the worker) and ends the thread; terminates it if that takes too long. */
  async close(): Promise<void> {
    if (!this.failure) {
      this.failure = new ProviderError('local', 'connection', 'local STT: closed');
      this.post({ type: 'close' });
    }
    const timer = setTimeout(() => void this.worker.terminate(), CLOSE_GRACE_MS);
    await this.exited;
    clearTimeout(timer);
  }

  private fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    this.rejectReady(err);
    this.onFailure?.(err);
    void this.worker.terminate();
  }
}

function spawnDecoderWorker(workerData: DecoderWorkerData): Worker {
  if (import.meta.url.endsWith('.ts')) {
    // Running from source (vitest): there is no compiled worker next to this file, so load the .ts one through
    // tsx's API (a root dev dependency). `--import tsx` in execArgv does not reach worker threads on Node 20.
    const entry = new URL('./pocketsphinx-worker.ts', import.meta.url).href;
    const tsx = import.meta.resolve('tsx/esm/api');
    const code = `import(${JSON.stringify(tsx)}).then((api) => api.tsImport(${JSON.stringify(entry)}, ${JSON.stringify(entry)}))`;
    return new Worker(code, { eval: true, workerData });
  }
  return new Worker(new URL('./pocketsphinx-worker.js', import.meta.url), { workerData });
}
