/**
 * End of turn measured as LiveKit's eot-bench measures it: every silence of a take is a decision — a pause inside
 * the utterance (`hold`, where ending the turn is a false cut-off) or its real end (`eot`, where the wait is the
 * latency). A detector gives, through each silence, the probability that the user has finished (a step function:
 * it changes when words arrive). A policy ends the turn at the first moment, at least `actionDelayMs` into the
 * silence, that the probability reaches `threshold`, and at `timeoutMs` whatever it says. Sweeping the policies
 * gives each detector's trade-off between false cut-offs and latency.
 */

/** From `fromMs` into the silence on, the detector says `p`; `settled`: the words are final or stable by then. */
export interface Step {
  fromMs: number;
  p: number;
  settled: boolean;
}

export interface Silence {
  label: 'hold' | 'eot';
  /** How long the silence lasted before speech resumed (eot: until the next take). */
  durationMs: number;
  steps: readonly Step[];
}

export interface Policy {
  threshold: number;
  actionDelayMs: number;
  timeoutMs: number;
}

/** Where on the trade-off one policy lands. */
export interface PolicyPoint extends Policy {
  /** Share of holds the policy ended the turn in, %. */
  cutoffPct: number;
  /** Mean wait after the real end, ms. */
  latencyMs: number;
}

/** When the policy ends the turn, ms into the silence (it may be past the silence's end: then it did not). */
export function fireAt(steps: readonly Step[], policy: Policy): number {
  for (let i = 0; i < steps.length; i++) {
    const step = steps[i]!;
    if (step.p < policy.threshold) continue;
    const until = steps[i + 1]?.fromMs ?? Infinity;
    const at = Math.max(step.fromMs, policy.actionDelayMs);
    if (at < until) return Math.min(at, policy.timeoutMs);
  }
  return policy.timeoutMs;
}

export function evaluate(silences: readonly Silence[], policy: Policy): PolicyPoint {
  let holds = 0;
  let cut = 0;
  let ends = 0;
  let waited = 0;
  for (const s of silences) {
    const at = fireAt(s.steps, policy);
    if (s.label === 'hold') {
      holds++;
      if (at < s.durationMs) cut++;
    } else {
      ends++;
      waited += at;
    }
  }
  return {
    ...policy,
    cutoffPct: holds === 0 ? 0 : (100 * cut) / holds,
    latencyMs: ends === 0 ? 0 : waited / ends,
  };
}

export const SWEEP = {
  thresholds: Array.from({ length: 49 }, (_, i) => Math.round((0.02 + i * 0.02) * 100) / 100),
  actionDelaysMs: Array.from({ length: 41 }, (_, i) => i * 50),
  timeoutsMs: [500, 750, 1000, 1250, 1500, 2000, 2500, 3000],
} as const;

/** Every policy of the grid (a detector that always says 1 needs one threshold only). */
export function sweep(silences: readonly Silence[], constant = false): PolicyPoint[] {
  const points: PolicyPoint[] = [];
  for (const threshold of constant ? [1] : SWEEP.thresholds)
    for (const actionDelayMs of SWEEP.actionDelaysMs)
      for (const timeoutMs of SWEEP.timeoutsMs) {
        if (timeoutMs < actionDelayMs) continue;
        points.push(evaluate(silences, { threshold, actionDelayMs, timeoutMs }));
      }
  return points;
}

/** The lowest false cut-off rate of any policy whose mean latency is within `budgetMs` (undefined: none is). */
export function cutoffAtLatency(points: readonly PolicyPoint[], budgetMs: number): PolicyPoint | undefined {
  return best(
    points.filter((p) => p.latencyMs <= budgetMs),
    (p) => p.cutoffPct,
    (p) => p.latencyMs,
  );
}

/** The lowest mean latency of any policy that cuts off at most `cutoffPct` % of the holds. */
export function latencyAtCutoff(points: readonly PolicyPoint[], cutoffPct: number): PolicyPoint | undefined {
  return best(
    points.filter((p) => p.cutoffPct <= cutoffPct),
    (p) => p.latencyMs,
    (p) => p.cutoffPct,
  );
}

function best(
  points: readonly PolicyPoint[],
  key: (p: PolicyPoint) => number,
  tie: (p: PolicyPoint) => number,
): PolicyPoint | undefined {
  let out: PolicyPoint | undefined;
  for (const p of points) if (!out || key(p) < key(out) || (key(p) === key(out) && tie(p) < tie(out))) out = p;
  return out;
}

/** The trade-off curve: policies no other beats on both latency and false cut-offs, by latency. */
export function paretoFrontier(points: readonly PolicyPoint[]): PolicyPoint[] {
  const sorted = [...points].sort((a, b) => a.latencyMs - b.latencyMs || a.cutoffPct - b.cutoffPct);
  const out: PolicyPoint[] = [];
  for (const p of sorted) if (out.length === 0 || p.cutoffPct < out[out.length - 1]!.cutoffPct) out.push(p);
  return out;
}

/**
 * Eager generation as the turn detector does it: a preview when the words are settled and sound finished
 * (p ≥ `minScore`) during a silence. Per real turn, how many start, and the share the user's going on cancels.
 */
export function previewCost(
  silences: readonly Silence[],
  minScore: number,
  takes: number,
): { perTurn: number; cancelledPct: number } {
  let started = 0;
  let cancelled = 0;
  for (const s of silences) {
    const fires = s.steps.some((st) => st.settled && st.p >= minScore && st.fromMs < s.durationMs);
    if (!fires) continue;
    started++;
    if (s.label === 'hold') cancelled++;
  }
  return { perTurn: takes === 0 ? 0 : started / takes, cancelledPct: started === 0 ? 0 : (100 * cancelled) / started };
}
