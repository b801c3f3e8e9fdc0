import { concat } from './pcm.js';

/** Records a track frame by frame on the session clock. */
export class TrackRecorder {
  private readonly chunks: Int16Array[] = [];
  private length = 0;

  /** Writes `samples` at frame index `frame` (frames of `frameSamples`); gaps stay silent. */
  write(frame: number, frameSamples: number, samples: Int16Array | undefined): void {
    const at = frame * frameSamples;
    if (at > this.length) {
      this.chunks.push(new Int16Array(at - this.length));
      this.length = at;
    }
    const s = samples ?? new Int16Array(frameSamples);
    this.chunks.push(s);
    this.length += s.length;
  }

  samples(): Int16Array {
    return concat(
      this.chunks.map((samples) => ({ samples, sampleRate: 1 })),
      1,
    ).samples;
  }
}

/** One session's place on a shared clock. */
interface Stepper {
  step: (i: number) => boolean;
  /** Monotonic time of its step 0, and the next step's index. */
  start: number;
  next: number;
  signal: AbortSignal;
  done: (steps: number) => void;
  fail: (err: unknown) => void;
}

/**
 * One timer for every session of the process: each tick steps every session whose next frame is due, in one
 * event-loop turn — so the frames of hundreds of sessions go out in one socket write, not one write and one
 * timer each. A session's step `i` never runs before `i × frameMs` after its step 0; a late tick catches up.
 */
export class FrameTicker {
  private readonly steppers = new Set<Stepper>();
  private timer: NodeJS.Timeout | undefined;
  /** Every session's steps fall on this grid, so one timer firing serves them all. */
  private origin: number | undefined;

  constructor(readonly frameMs: number) {}

  /** Steps `step(0)` now, then `step(1)`, … on the clock until it returns false or the signal fires. */
  run(step: (i: number) => boolean, signal: AbortSignal): Promise<number> {
    return new Promise((resolve, reject) => {
      if (signal.aborted || !step(0)) return resolve(0);
      // Step 0 now; the later ones on the grid, counted from when step 0 returned (never sooner than frameMs
      // after anything it saw).
      const now = performance.now();
      this.origin ??= now;
      const grid = this.origin + Math.ceil((now - this.origin) / this.frameMs) * this.frameMs;
      const s: Stepper = { step, start: grid, next: 1, signal, done: resolve, fail: reject };
      this.steppers.add(s);
      this.schedule();
    });
  }

  /** Runs the steps of `s` that are due; false (and `s` resolved) when it has finished. */
  private advance(s: Stepper, now: number): boolean {
    try {
      while (s.start + s.next * this.frameMs <= now) {
        if (s.signal.aborted || !s.step(s.next)) break;
        s.next++;
      }
    } catch (err) {
      // One session's failure is its own: it leaves the clock, the others keep their pace.
      s.fail(err);
      return false;
    }
    if (s.signal.aborted || s.start + s.next * this.frameMs <= now) {
      s.done(s.next);
      return false;
    }
    return true;
  }

  private schedule(): void {
    if (this.timer || this.steppers.size === 0) return;
    let due = Infinity;
    for (const s of this.steppers) due = Math.min(due, s.start + s.next * this.frameMs);
    // A timer can fire a little early (the event loop's cached clock is stale after a busy turn): it is
    // re-armed for the rest, so a frame is never stepped before its time.
    this.timer = setTimeout(() => this.tick(), Math.max(0, Math.ceil(due - performance.now())));
  }

  private tick(): void {
    this.timer = undefined;
    const now = performance.now();
    for (const s of this.steppers) if (!this.advance(s, now)) this.steppers.delete(s);
    this.schedule();
  }
}

const tickers = new Map<number, FrameTicker>();

/**
 * A real-time clock: calls `step(i)` every `frameMs` (step 0 at once), never early, until `step` returns false
 * or the signal fires; resolves with the number of steps taken. Sessions of one process share one timer.
 */
export function runClock(frameMs: number, step: (i: number) => boolean, signal: AbortSignal): Promise<number> {
  let ticker = tickers.get(frameMs);
  if (!ticker) tickers.set(frameMs, (ticker = new FrameTicker(frameMs)));
  return ticker.run(step, signal);
}
