import { ProviderError } from '../errors.js';
import { DecoderWorker } from './decoder-worker.js';
import { DEFAULT_MODEL_DIR } from './worker-protocol.js';

/** Idle decoders beyond the pool's target are freed after this long unused (memory returns after a peak). */
const IDLE_FREE_MS = 10_000;

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
export class DecoderPool {
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
/** The pool of a model directory (one per process). */
export const poolFor = (modelDir: string): DecoderPool => {
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
