import { Worker } from 'node:worker_threads';
import { ProviderError } from '../errors.js';
import { trimNativeHeap } from './native-heap.js';
import type { DecoderWorkerData, FromWorker, ToWorker } from './worker-protocol.js';

/** How long close() waits for the worker to free the decoder before terminating it. */
const CLOSE_GRACE_MS = 2000;

/** The worker thread holding one loaded decoder, with its lifecycle turned into promises and callbacks. */
export class DecoderWorker {
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
