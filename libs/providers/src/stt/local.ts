import { Worker } from 'node:worker_threads';
import { dither, StreamResampler } from '@va/audio';
import type { AudioChunk, STT, TranscriptEvent } from '../types.js';
import { AsyncQueue } from '@va/stream';
import { SpeechGate, type SpeechGateOptions } from './speech-gate.js';
import { trimNativeHeap } from './native-heap.js';
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
  /** When a stretch of input is worth a decoder (see SpeechGate). */
  gate?: SpeechGateOptions;
}

/** Audio messages the worker may have queued: bounds memory and makes a slow decoder slow the reader down. */
const MAX_IN_FLIGHT = 4;
/** Chunks a speech segment may hold while it waits for a decoder or for the worker, before input is paused. */
const MAX_SEGMENT_BACKLOG = 8;
/** How long close() waits for the worker to free the decoder before terminating it. */
const CLOSE_GRACE_MS = 2000;
/** Idle decoders beyond the pool's target are freed after this long unused (memory returns after a peak). */
const IDLE_FREE_MS = 10_000;

/**
 * Environment for a process that runs pocketsphinx decoders (glibc reads it at start): allocations of 128 KiB and
 * more are mapped on their own and returned to the system when a decoder is freed. With glibc's default (a
 * threshold that grows to 32 MiB) a freed decoder's model stays in the worker thread's arena: measured, six
 * decoders loaded and closed left 332 MB of 721 MB resident; with this, 181 MB (56 MB before any was loaded).
 */
export const LOCAL_STT_PROCESS_ENV = { MALLOC_MMAP_THRESHOLD_: '131072' } as const;

export interface DecoderPoolOptions {
  /** Loaded decoders kept ahead of the sessions, so a new session's first words never wait for a load. Default 0. */
  spare?: number;
  /**
   * Most decoders loaded at once (each ≈ 100 MB and a thread). Up to it, every open session has a decoder ready;
   * beyond it sessions share them, and a speaker finding all `max` busy waits for one. Default 6.
   */
  max?: number;
}

const POOL_DEFAULTS = { spare: 0, max: 6 } satisfies Required<DecoderPoolOptions>;
let poolOptions: Required<DecoderPoolOptions> = { ...POOL_DEFAULTS };

/**
 * The decoders of one model directory, shared by every LocalSTT of the process. A decoder is leased for one speech
 * segment (from the gate opening to its closing, see SpeechGate) and returned after it. The pool keeps
 * min(max, open sessions + spare) loaded: as fast as a decoder per session while sessions are few, and bounded
 * memory (max decoders) however many sessions the instance holds.
 */
class DecoderPool {
  private readonly idle: DecoderWorker[] = [];
  private readonly waiting: { resolve: (w: DecoderWorker) => void; reject: (err: unknown) => void }[] = [];
  private loading = 0;
  private leased = 0;
  private lastLoadMs: number | undefined;
  private warming: Promise<number> | undefined;
  /** Open LocalSTT instances on this model: what the pool keeps loaded for. */
  private sessions = 0;
  private freeTimer: NodeJS.Timeout | undefined;

  constructor(private readonly modelDir: string) {}

  get stats(): DecoderPoolStats {
    return {
      loaded: this.idle.length + this.leased,
      loading: this.loading,
      leased: this.leased,
      waiting: this.waiting.length,
    };
  }

  /** A loaded decoder for one segment: an idle one, a new one while below `max`, else the next one released. */
  async lease(signal?: AbortSignal): Promise<DecoderWorker> {
    signal?.throwIfAborted();
    for (let worker = this.idle.pop(); worker; worker = this.idle.pop()) {
      if (!worker.failure) return this.take(worker);
      void worker.close();
    }
    if (this.idle.length + this.leased + this.loading < poolOptions.max) {
      const worker = await this.load();
      return this.take(worker);
    }
    return new Promise<DecoderWorker>((resolve, reject) => {
      const waiter = { resolve, reject };
      this.waiting.push(waiter);
      signal?.addEventListener(
        'abort',
        () => {
          const at = this.waiting.indexOf(waiter);
          if (at < 0) return;
          this.waiting.splice(at, 1);
          reject(signal.reason);
        },
        { once: true },
      );
    });
  }

  /** Back from a segment: to the next waiter, or idle; a failed decoder is dropped (the next lease loads anew). */
  release(worker: DecoderWorker): void {
    this.leased--;
    this.offer(worker);
  }

  /**
   * A session opens on this pool: resolves (with a load time, ms) once the decoders the pool now wants are loaded —
   * while below `max` that is one more, so the session's first words find it ready, as with a decoder of its own.
   * Rejects with the load error (and the session is not counted).
   */
  async join(): Promise<number> {
    this.sessions++;
    try {
      const loadMs = await this.firstLoad();
      await this.preload();
      return loadMs;
    } catch (err) {
      this.sessions--;
      throw err;
    }
  }

  leave(): void {
    this.sessions = Math.max(0, this.sessions - 1);
    this.scheduleFree();
  }

  /** The load time of a decoder known to load; loads one (kept idle) if none has yet. Concurrent callers share it. */
  private firstLoad(): Promise<number> {
    if (this.lastLoadMs !== undefined && this.idle.length + this.leased > 0) return Promise.resolve(this.lastLoadMs);
    this.warming ??= this.load()
      .then((worker) => {
        this.offer(worker);
        return worker.ready;
      })
      .finally(() => (this.warming = undefined));
    return this.warming;
  }

  /** How many decoders the pool keeps loaded. */
  private get target(): number {
    return Math.min(poolOptions.max, this.sessions + poolOptions.spare);
  }

  /** Loads decoders until the pool holds its target; resolves when those have loaded. */
  async preload(): Promise<void> {
    const loads: Promise<unknown>[] = [];
    const healthy = () => this.idle.filter((w) => !w.failure).length + this.leased;
    while (healthy() + this.loading < this.target) {
      loads.push(this.load().then((worker) => this.offer(worker)));
    }
    await Promise.allSettled(loads);
  }

  async close(): Promise<void> {
    clearTimeout(this.freeTimer);
    for (const waiter of this.waiting.splice(0))
      waiter.reject(new ProviderError('local', 'connection', 'local STT: closed'));
    await Promise.allSettled(this.idle.splice(0).map((w) => w.close()));
  }

  /** A decoder nobody holds (released, or just loaded): to the next waiter, or idle; a failed one is dropped. */
  private offer(worker: DecoderWorker): void {
    if (worker.failure) {
      void worker.close();
      this.serveWaiter();
      return;
    }
    const waiter = this.waiting.shift();
    if (waiter) {
      this.leased++;
      waiter.resolve(worker);
      return;
    }
    this.idle.push(worker);
    this.scheduleFree();
  }

  private take(worker: DecoderWorker): DecoderWorker {
    this.leased++;
    void this.preload();
    return worker;
  }

  private async load(): Promise<DecoderWorker> {
    this.loading++;
    const worker = new DecoderWorker({ modelDir: this.modelDir });
    try {
      this.lastLoadMs = await worker.ready;
      return worker;
    } catch (err) {
      void worker.close();
      throw err;
    } finally {
      this.loading--;
    }
  }

  /** A slot freed by a failed decoder: load a new one for the first waiter. */
  private serveWaiter(): void {
    const waiter = this.waiting.shift();
    if (!waiter) return;
    this.load().then((worker) => waiter.resolve(this.take(worker)), waiter.reject);
  }

  private scheduleFree(): void {
    clearTimeout(this.freeTimer);
    this.freeTimer = setTimeout(() => {
      while (this.idle.length > 0 && this.idle.length + this.leased > this.target) void this.idle.shift()!.close();
    }, IDLE_FREE_MS);
    this.freeTimer.unref();
  }
}

export interface DecoderPoolStats {
  /** Decoders with a model loaded (idle or leased). */
  loaded: number;
  loading: number;
  /** Decoders serving a speech segment now. */
  leased: number;
  /** Segments waiting for a decoder (all `max` leased). */
  waiting: number;
}

const pools = new Map<string, DecoderPool>();
const poolFor = (modelDir: string) => {
  let pool = pools.get(modelDir);
  if (!pool) pools.set(modelDir, (pool = new DecoderPool(modelDir)));
  return pool;
};

/** Sets how many decoders the process keeps ready (`spare`) and may load (`max`); the stt service sets both. */
export function configureDecoderPool(opts: DecoderPoolOptions): void {
  poolOptions = { ...POOL_DEFAULTS, ...opts };
  if (poolOptions.max < 1) throw new Error(`decoder pool max must be at least 1, got ${poolOptions.max}`);
}

/** Loads the spare decoders (service start), so even the first session finds one. Resolves once they are loaded. */
export async function preloadDecoder(modelDir = DEFAULT_MODEL_DIR): Promise<void> {
  await poolFor(modelDir).preload();
}

/** What the decoder pool of a model directory holds now (a gauge for the stt service; tests). */
export function decoderPoolStats(modelDir = DEFAULT_MODEL_DIR): DecoderPoolStats {
  return poolFor(modelDir).stats;
}

/** Frees every idle decoder and resets the pool options (end of a test file, process shutdown). */
export async function closeDecoderPools(): Promise<void> {
  const all = [...pools.values()];
  pools.clear();
  poolOptions = { ...POOL_DEFAULTS };
  await Promise.allSettled(all.map((pool) => pool.close()));
}

/**
 * Offline STT: pocketsphinx (en-us) in worker threads shared through a per-process pool. A transcription holds a
 * decoder only while its audio has sound in it (SpeechGate): quiet stretches go nowhere, and a session that is
 * listening costs no decoder. Transcriptions on one instance run one after another (a second call waits until
 * the first has ended). close() ends the instance; the pool's decoders stay for other instances.
 */
export class LocalSTT implements STT {
  readonly provider = 'local';
  readonly sampleRate = DECODER_SAMPLE_RATE;
  /** How long the model of the decoder last leased took to load, ms. */
  modelLoadMs: number | undefined;

  /** The decoder serving a segment now (tests reach in to kill it as a native crash would). */
  private leased: DecoderWorker | undefined;
  private turn: Promise<void> = Promise.resolve();
  private closed = false;
  private joined = false;
  private readonly stopping = new AbortController();
  private readonly modelDir: string;
  private readonly gateOptions: SpeechGateOptions;

  constructor(opts: LocalSTTOptions = {}) {
    this.modelDir = opts.modelDir ?? DEFAULT_MODEL_DIR;
    this.gateOptions = opts.gate ?? {};
  }

  /** Creates an instance with a decoder loaded, so the first utterance does not pay for it. Throws if it cannot load. */
  static async create(opts: LocalSTTOptions = {}): Promise<LocalSTT> {
    const stt = new LocalSTT(opts);
    await stt.open();
    return stt;
  }

  async *transcribe(audio: AsyncIterable<AudioChunk>, signal: AbortSignal): AsyncGenerator<TranscriptEvent> {
    const previous = this.turn;
    let release!: () => void;
    this.turn = new Promise((resolve) => (release = resolve));
    try {
      await previous;
      if (signal.aborted) return;
      if (this.closed) throw new ProviderError('local', 'connection', 'local STT: closed');
      yield* this.gated(audio, signal);
    } finally {
      release();
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stopping.abort();
    await this.turn;
    if (this.joined) poolFor(this.modelDir).leave();
  }

  /** Counts this instance in its pool (which then keeps a decoder ready for it, up to `max`) and checks the model loads. */
  private async open(): Promise<void> {
    this.modelLoadMs = await poolFor(this.modelDir).join();
    this.joined = true;
  }

  /**
   * Reads the input through a SpeechGate: each stretch with sound in it becomes a segment that leases a decoder,
   * is recognised, and returns it. Segments run one after another, so events stay in order.
   */
  private async *gated(audio: AsyncIterable<AudioChunk>, signal: AbortSignal): AsyncGenerator<TranscriptEvent> {
    const pool = poolFor(this.modelDir);
    const gate = new SpeechGate(this.gateOptions);
    const events = new AsyncQueue<TranscriptEvent>();
    // Ends this transcription's segments however it ends (abort, close(), input error, consumer gone).
    const done = new AbortController();
    const stop = AbortSignal.any([signal, this.stopping.signal, done.signal]);
    let previous: Promise<void> = Promise.resolve();
    let segment: { input: AsyncQueue<AudioChunk>; backlog: number; drained?: () => void } | undefined;

    const startSegment = () => {
      const input = new AsyncQueue<AudioChunk>();
      const current: NonNullable<typeof segment> = { input, backlog: 0 };
      // The decoder pulls from here; each pull makes room in the backlog.
      const counted = (async function* () {
        for await (const chunk of input) {
          current.backlog--;
          const wake = current.drained;
          current.drained = undefined;
          wake?.();
          yield chunk;
        }
      })();
      const after = previous;
      const run = (async () => {
        await after;
        const worker = await pool.lease(stop);
        this.leased = worker;
        try {
          this.modelLoadMs = await worker.ready;
          for await (const event of this.stream(worker, counted, stop)) events.push(event);
        } finally {
          this.leased = undefined;
          pool.release(worker);
        }
      })();
      previous = run.catch(() => {});
      run.catch((err: unknown) => {
        if (!stop.aborted) events.fail(err);
      });
      return current;
    };

    const pump = async () => {
      try {
        for await (const chunk of audio) {
          if (stop.aborted) return;
          const { pass, closed } = gate.push(chunk);
          if (pass.length === 0) continue;
          segment ??= startSegment();
          for (const piece of pass) segment.input.push(piece);
          segment.backlog += pass.length;
          const current = segment;
          if (closed) {
            current.input.end();
            segment = undefined;
          }
          // A decoder slower than the input (or none free yet) pauses the reading; the caller's queue bounds the rest.
          while (current.backlog > MAX_SEGMENT_BACKLOG && !stop.aborted) {
            await new Promise<void>((resolve) => (current.drained = resolve));
          }
        }
        segment?.input.end();
        segment = undefined;
        await previous;
        events.end();
      } catch (err) {
        events.fail(err);
      }
    };

    const cancel = () => {
      events.cancel();
      segment?.input.cancel();
      segment?.drained?.();
    };
    stop.addEventListener('abort', cancel, { once: true });
    try {
      void pump();
      yield* events;
    } finally {
      stop.removeEventListener('abort', cancel);
      done.abort();
      cancel();
      await previous;
    }
  }

  /** One segment on a leased decoder: audio to the worker under flow control, its events back. */
  private async *stream(
    worker: DecoderWorker,
    audio: AsyncIterable<AudioChunk>,
    signal: AbortSignal,
  ): AsyncGenerator<TranscriptEvent> {
    if (worker.failure) throw worker.failure;
    const run = ++lastRun;
    const events = new AsyncQueue<TranscriptEvent>();
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
      } else if (msg.type === 'done') events.end();
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

/** Run ids are unique in the process: a pooled decoder serves many instances, and a late message must never match. */
let lastRun = 0;
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
    trimNativeHeap();
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
