import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { createHistogram, type RecordableHistogram } from 'node:perf_hooks';
import { ATTR, METRIC, observableGauge } from '@va/telemetry';

/** When an instance counts as overloaded. */
export interface LoadLimits {
  /** Event-loop delay p99 over one window above this (ms): callbacks run late, every session feels it. */
  maxEventLoopDelayMs: number;
  /** CPU of the event-loop thread over one window above this, in cores (0 = no CPU limit). */
  maxCpu: number;
  /** Length of one measuring window (ms). */
  windowMs: number;
  /** Overloaded windows in a row before the instance stops claiming, and calm ones before it claims again. */
  windowsToTrip: number;
  windowsToClear: number;
  /**
   * One window with its event-loop delay this many times over the limit trips at once: a burst of new sessions
   * drives the delay up within a second, and three windows of it admit a crowd the stage cannot serve.
   */
  burstFactor: number;
}

/**
 * Defaults: callbacks 50 ms late (p99) mean a 20 ms audio stage is frames behind — measured on the capacity bench,
 * it is where turns start to miss the latency SLO (BENCHMARKS.md: 25 sessions 10–20 ms, 50 sessions 23–56 ms,
 * 100 sessions 107–292 ms); one core is all a single-threaded stage can use. Three such seconds in a row trip it
 * (a GC pause is not overload), one at four times the limit trips at once, two calm ones clear it.
 */
export const LOAD_DEFAULTS = {
  maxEventLoopDelayMs: 50,
  maxCpu: 0.95,
  windowMs: 1000,
  windowsToTrip: 3,
  windowsToClear: 2,
  burstFactor: 4,
} as const satisfies LoadLimits;

/**
 * CPU time of the calling (event-loop) thread, ms. A stage's worker threads (pocketsphinx decoders) run on other
 * cores and do not make its event loop late, so they must not count towards its limit. Linux: the thread's
 * utime + stime from /proc (clock ticks of 10 ms); elsewhere the whole process's.
 */
function loopThreadCpuMs(): number {
  try {
    // The command name (2nd field) may hold spaces: count fields after its closing parenthesis.
    const stat = readFileSync('/proc/thread-self/stat', 'latin1');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
  } catch {
    const { user, system } = process.cpuUsage();
    return (user + system) / 1000;
  }
}
/** USER_HZ is 100 on every Linux Node supports. */
const TICK_MS = 10;

/** The event-loop delay sampler's period (ms): fine enough for 20 ms frames, cheap enough to leave on. */
const RESOLUTION_MS = 10;

/** One window's figures. */
export interface LoadSample {
  /** Event-loop delay p99 over the window (ms). */
  eventLoopDelayP99Ms: number;
  /** CPU of the event-loop thread over the window, in cores. */
  cpu: number;
}

/**
 * Measures this process's own load in short windows — event-loop delay (how late callbacks run) and CPU — and
 * says when it is over its limits, so an actor host stops claiming new sessions before the ones it has degrade.
 * Exported as gauges (`va.load.*`) for dashboards and autoscalers.
 */
export class LoadMonitor extends EventEmitter<{ change: [overloaded: boolean]; sample: [LoadSample] }> {
  readonly limits: LoadLimits;
  /** Event-loop delays of this window, in µs. */
  private readonly delays: RecordableHistogram = createHistogram();
  private ticker: NodeJS.Timeout | undefined;
  private lastTick = 0;
  private timer: NodeJS.Timeout | undefined;
  private cpuAtMs = loopThreadCpuMs();
  private wallAt = performance.now();
  private streak = 0;
  private over = false;
  private last: LoadSample = { eventLoopDelayP99Ms: 0, cpu: 0 };
  /** The worst window since each gauge was last read: an export every 10 s still sees a bad second. */
  private worstDelay = 0;
  private worstCpu = 0;

  constructor(limits: Partial<LoadLimits> = {}) {
    super();
    this.limits = { ...LOAD_DEFAULTS, ...limits };
  }

  /** The last window's figures. */
  get latest(): LoadSample {
    return this.last;
  }

  /** Over the limits (and not yet calm again). */
  get overloaded(): boolean {
    return this.over;
  }

  /** Starts measuring; `stage` labels the exported gauges. */
  start(stage?: string): this {
    if (this.timer) return this;
    // A timer every RESOLUTION_MS: how late it fires is how long callbacks waited. (perf_hooks'
    // monitorEventLoopDelay drops the sample spanning a reset, so a block right after a window starts is lost.)
    this.lastTick = performance.now();
    this.ticker = setInterval(() => {
      const now = performance.now();
      this.delays.record(Math.max(1, Math.round((now - this.lastTick - RESOLUTION_MS) * 1000)));
      this.lastTick = now;
    }, RESOLUTION_MS);
    this.ticker.unref();
    this.cpuAtMs = loopThreadCpuMs();
    this.wallAt = performance.now();
    this.timer = setInterval(() => this.sampleWindow(), this.limits.windowMs);
    this.timer.unref();
    const attrs = stage ? { [ATTR.stage]: stage } : {};
    observableGauge(METRIC.loadEventLoopDelay, () => this.readWorst('delay'), attrs);
    observableGauge(METRIC.loadCpu, () => this.readWorst('cpu'), attrs);
    observableGauge(METRIC.loadOverloaded, () => (this.over ? 1 : 0), attrs);
    return this;
  }

  stop(): void {
    clearInterval(this.timer);
    clearInterval(this.ticker);
    this.timer = undefined;
    this.ticker = undefined;
  }

  /** Closes the current window (called by the timer; tests call it directly). */
  sampleWindow(): LoadSample {
    const now = performance.now();
    const cpuMs = loopThreadCpuMs();
    const wallMs = Math.max(1, now - this.wallAt);
    const usedMs = cpuMs - this.cpuAtMs;
    this.cpuAtMs = cpuMs;
    this.wallAt = now;
    // A callback still blocked now has not been measured yet: count the wait so far as one sample.
    const blockedMs = this.ticker ? now - this.lastTick - RESOLUTION_MS : 0;
    const h = this.delays;
    const p99 = Math.max(h.count > 0 ? h.percentile(99) / 1000 : 0, blockedMs);
    h.reset();
    this.record({ eventLoopDelayP99Ms: round(p99), cpu: round(usedMs / wallMs, 3) });
    return this.last;
  }

  /** The worst window's figure since the last read; the next read starts from the current window. */
  private readWorst(which: 'delay' | 'cpu'): number {
    if (which === 'delay') {
      const worst = this.worstDelay;
      this.worstDelay = this.last.eventLoopDelayP99Ms;
      return worst;
    }
    const worst = this.worstCpu;
    this.worstCpu = this.last.cpu;
    return worst;
  }

  /** Takes one window's figures and updates the overloaded state (exposed so the policy is testable alone). */
  record(sample: LoadSample): void {
    this.last = sample;
    this.worstDelay = Math.max(this.worstDelay, sample.eventLoopDelayP99Ms);
    this.worstCpu = Math.max(this.worstCpu, sample.cpu);
    const { maxEventLoopDelayMs, maxCpu, windowsToTrip, windowsToClear, burstFactor } = this.limits;
    const hot = sample.eventLoopDelayP99Ms > maxEventLoopDelayMs || (maxCpu > 0 && sample.cpu > maxCpu);
    const burst = sample.eventLoopDelayP99Ms > maxEventLoopDelayMs * burstFactor;
    // Counts windows that disagree with the current state; enough of them in a row flip it.
    this.streak = hot !== this.over ? this.streak + 1 : 0;
    if (this.streak >= (this.over ? windowsToClear : burst ? 1 : windowsToTrip)) {
      this.over = hot;
      this.streak = 0;
      this.emit('change', hot);
    }
    this.emit('sample', sample);
  }
}

function round(v: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}
