import type { InferenceSession } from 'onnxruntime-node';

/** Silero v5 at 16 kHz: 64 samples of context in front of each 512-sample frame, a 2 × 128 recurrent state. */
export const SILERO_INPUT = 64 + 512;
export const SILERO_STATE = 2 * 128;
const HALF_STATE = SILERO_STATE / 2;

export interface SileroBatchOptions {
  /**
   * How long the first row of a batch waits for others (ms). Streams send a frame every 32 ms at their own
   * phase: waiting a few ms gathers the rows of many streams into one run for a few ms of VAD latency.
   */
  windowMs: number;
  /** Rows per run at most (a larger backlog runs as several). */
  maxRows: number;
}

export const SILERO_BATCH_DEFAULTS = { windowMs: 4, maxRows: 256 } as const satisfies SileroBatchOptions;

interface Row {
  input: Float32Array;
  state: Float32Array;
  resolve: (r: { probability: number; state: Float32Array }) => void;
  reject: (err: unknown) => void;
}

/**
 * Runs the rows of every stream that shares one model in as few inferences as possible: rows queued within
 * `windowMs` of the first go out together as one batch ([B, 576] input, [2, B, 128] state), one run at a time.
 * Per row a batch of 32 costs about a fifth of a lone run; each stream keeps its own state, passed in and
 * handed back with every row.
 */
export class SileroBatcher {
  private pending: Row[] = [];
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private readonly sr: unknown;
  /** Runs and rows so far (for tests and stats). */
  readonly stats = { runs: 0, rows: 0 };

  constructor(
    private readonly ort: typeof import('onnxruntime-node'),
    private readonly session: InferenceSession,
    private readonly opts: SileroBatchOptions = SILERO_BATCH_DEFAULTS,
  ) {
    this.sr = new ort.Tensor('int64', BigInt64Array.of(16000n), []);
  }

  /** One frame of one stream: its input (context + frame) and its state before the frame. */
  run(input: Float32Array, state: Float32Array): Promise<{ probability: number; state: Float32Array }> {
    return new Promise((resolve, reject) => {
      this.pending.push({ input, state, resolve, reject });
      if (this.pending.length >= this.opts.maxRows) this.flushSoon(0);
      else this.flushSoon(this.opts.windowMs);
    });
  }

  private flushSoon(waitMs: number): void {
    if (this.running) return; // the run in flight flushes what gathered when it ends
    if (this.timer && waitMs > 0) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.flush(), waitMs);
  }

  private async flush(): Promise<void> {
    this.timer = undefined;
    if (this.running || this.pending.length === 0) return;
    this.running = true;
    try {
      while (this.pending.length > 0) {
        const rows = this.pending.splice(0, this.opts.maxRows);
        await this.infer(rows);
      }
    } finally {
      this.running = false;
    }
  }

  private async infer(rows: Row[]): Promise<void> {
    const b = rows.length;
    const input = new Float32Array(b * SILERO_INPUT);
    // The model's state is [2, B, 128]: layer-major, so each stream's two halves go to two places.
    const state = new Float32Array(SILERO_STATE * b);
    rows.forEach((r, i) => {
      input.set(r.input, i * SILERO_INPUT);
      state.set(r.state.subarray(0, HALF_STATE), i * HALF_STATE);
      state.set(r.state.subarray(HALF_STATE), (b + i) * HALF_STATE);
    });
    let out: InferenceSession.OnnxValueMapType;
    try {
      out = await this.session.run({
        input: new this.ort.Tensor('float32', input, [b, SILERO_INPUT]),
        state: new this.ort.Tensor('float32', state, [2, b, HALF_STATE]),
        sr: this.sr as InstanceType<typeof this.ort.Tensor>,
      });
    } catch (err) {
      for (const r of rows) r.reject(err);
      return;
    }
    this.stats.runs++;
    this.stats.rows += b;
    const probs = out.output?.data as Float32Array | undefined;
    const next = out.stateN?.data as Float32Array | undefined;
    if (!probs || !next || probs.length < b || next.length < SILERO_STATE * b) {
      const err = new Error('silero VAD: model returned no output/stateN');
      for (const r of rows) r.reject(err);
      return;
    }
    rows.forEach((r, i) => {
      const s = new Float32Array(SILERO_STATE);
      s.set(next.subarray(i * HALF_STATE, (i + 1) * HALF_STATE), 0);
      s.set(next.subarray((b + i) * HALF_STATE, (b + i + 1) * HALF_STATE), HALF_STATE);
      r.resolve({ probability: Math.min(1, Math.max(0, probs[i]!)), state: s });
    });
  }
}
