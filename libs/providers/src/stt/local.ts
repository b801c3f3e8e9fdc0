import type { AudioChunk, STT, TranscriptEvent } from '../types.js';
import { ProviderError } from '../errors.js';
import { poolFor, type DecoderPool } from './decoder-pool.js';
import { recognise } from './decoder-run.js';
import type { DecoderWorker } from './decoder-worker.js';
import { SpeechGate, type SpeechGateOptions } from './speech-gate.js';
import { SegmentedTranscription } from './speech-segments.js';
import { DECODER_SAMPLE_RATE, DEFAULT_MODEL_DIR } from './worker-protocol.js';

export {
  configureDecoderPool,
  preloadDecoder,
  decoderPoolStats,
  closeDecoderPools,
  type DecoderPoolOptions,
  type DecoderPoolStats,
} from './decoder-pool.js';

export interface LocalSTTOptions {
  /** Directory with `en-us/`, `en-us.lm.bin`, `cmudict-en-us.dict`. Default: Debian's pocketsphinx-en-us. */
  modelDir?: string;
  /** When a stretch of input is worth a decoder (see SpeechGate). */
  gate?: SpeechGateOptions;
}

/**
 * Environment for a process that runs pocketsphinx decoders (glibc reads it at start): allocations of 128 KiB and
 * more are mapped on their own and returned to the system when a decoder is freed. With glibc's default (a
 * threshold that grows to 32 MiB) a freed decoder's model stays in the worker thread's arena: measured, six
 * decoders loaded and closed left 332 MB of 721 MB resident; with this, 181 MB (56 MB before any was loaded).
 */
export const LOCAL_STT_PROCESS_ENV = { MALLOC_MMAP_THRESHOLD_: '131072' } as const;

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
  private gated(audio: AsyncIterable<AudioChunk>, signal: AbortSignal): AsyncIterable<TranscriptEvent> {
    const pool = poolFor(this.modelDir);
    const segments = new SegmentedTranscription(
      new SpeechGate(this.gateOptions),
      (input, stop) => this.decodeSegment(pool, input, stop),
      [signal, this.stopping.signal],
    );
    return segments.run(audio);
  }

  /** One segment: a decoder leased from the pool for it, and returned after it however it ends. */
  private async *decodeSegment(
    pool: DecoderPool,
    audio: AsyncIterable<AudioChunk>,
    stop: AbortSignal,
  ): AsyncGenerator<TranscriptEvent> {
    const worker = await pool.lease(stop);
    this.leased = worker;
    try {
      this.modelLoadMs = await worker.ready;
      yield* recognise(worker, audio, stop);
    } finally {
      this.leased = undefined;
      pool.release(worker);
    }
  }
}
