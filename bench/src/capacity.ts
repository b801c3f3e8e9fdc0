import { METRIC } from '@va/telemetry';
import type { ReceivedMetric } from '@va/testkit';
import { HARNESS, NATS_SERVER, runScenario, type ScenarioResult } from './scenario.js';
import { percentile, round, type Row } from './stats.js';

/** The ramp of concurrent sessions a full capacity run steps through. */
export const CAPACITY_STEPS = [1, 25, 50, 100, 200, 300] as const;
/** The SLO a step must meet to count: no turn lost and e2e p99 within this of the 1-session p50. */
export const SLO_MARGIN_MS = 150;

export interface CapacityOptions {
  steps: readonly number[];
  turnsPerSession: number;
  instances: number;
  outDir: string;
  /** Stop the ramp after a step that lost more than this share of its turns (the machine is past its capacity). */
  stopAfterLostShare?: number;
  /** Sessions open evenly over this long (ms), so a step's sessions run together without one burst of opens. */
  openOverMs?: number;
  log?: (line: string) => void;
}

/** One stage's figures over one step. */
export interface StageLoad {
  stage: string;
  /** Process CPU time ÷ (sessions × seconds): stable on a noisy machine, unlike latency. */
  cpuMsPerSessionSecond: number;
  cpuPercent: number;
  /** The worst 1-second window's event-loop delay p99 (ms): the largest `va.load.event_loop_delay` exported. */
  eventLoopDelayP99Ms?: number;
  framesDropped: number;
}

export interface CapacityStep {
  sessions: number;
  /** Sessions the gateway refused (some stage over its load limit), by the stage that was full. */
  refused: number;
  refusedBy: Record<string, number>;
  /** Turns of the admitted sessions. */
  asked: number;
  answered: number;
  lost: number;
  e2eP50: number;
  e2eP99: number;
  overheadP50: number;
  overheadP99: number;
  stages: StageLoad[];
  /** Whole pipeline (every stage and the gateway). */
  cpuMsPerSessionSecond: number;
  /** The rest of the machine's load: nats-server, and the harness (fake LLM servers, span collector, observer). */
  others: { name: string; cpuMsPerSessionSecond: number; cpuPercent: number }[];
  /** The run itself, for the rows other parts of the bench take from it. */
  result: ScenarioResult;
}

/** Sums a counter's last exported value per service (its data points, over attribute sets). */
function lastCounterPerService(metrics: readonly ReceivedMetric[], name: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of metrics) {
    if (m.name !== name) continue;
    const points = m.dataPoints as { asInt?: string | number; asDouble?: number }[];
    out.set(
      m.serviceName,
      points.reduce((a, p) => a + Number(p.asInt ?? p.asDouble ?? 0), 0),
    );
  }
  return out;
}

/** The largest value a gauge took in any export, per service. */
function maxGaugePerService(metrics: readonly ReceivedMetric[], name: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of metrics) {
    if (m.name !== name) continue;
    for (const p of m.dataPoints as { asInt?: string | number; asDouble?: number }[]) {
      const v = Number(p.asDouble ?? p.asInt ?? NaN);
      if (Number.isFinite(v)) out.set(m.serviceName, Math.max(out.get(m.serviceName) ?? 0, v));
    }
  }
  return out;
}

/** Runs one step of the ramp: `sessions` concurrent fast-cloud sessions through the real services. */
export async function runCapacityStep(sessions: number, opts: CapacityOptions): Promise<CapacityStep> {
  const result = await runScenario({
    profile: 'fast-cloud',
    variant: 'ours',
    sessions,
    turnsPerSession: opts.turnsPerSession,
    outDir: opts.outDir,
    instances: opts.instances,
    allowRefused: true,
    env: { GATEWAY_STAGGER_MS: String(Math.max(5, Math.round((opts.openOverMs ?? 5000) / sessions))) },
  });
  const e2e = result.turns.map((t) => t.e2eMs);
  const overhead = result.turns.flatMap((t) => (t.overheadMs === undefined ? [] : [t.overheadMs]));
  const dropped = lastCounterPerService(result.metrics, METRIC.audioDropped);
  const loopDelay = maxGaugePerService(result.metrics, METRIC.loadEventLoopDelay);
  // Instances of one stage add up: the figure is the stage's, not one process's.
  const byStage = new Map<string, { cpuMs: number; seconds: number }>();
  const others: CapacityStep['others'] = [];
  for (const u of result.usage) {
    if (u.name === NATS_SERVER || u.name === HARNESS) {
      others.push({
        name: u.name,
        cpuMsPerSessionSecond: round(u.cpuMs / (Math.max(1, sessions - result.refused.length) * u.seconds), 3),
        cpuPercent: round((u.cpuMs / (u.seconds * 1000)) * 100),
      });
      continue;
    }
    const s = byStage.get(u.name) ?? { cpuMs: 0, seconds: 0 };
    s.cpuMs += u.cpuMs;
    s.seconds = Math.max(s.seconds, u.seconds);
    byStage.set(u.name, s);
  }
  // Per session served: refused sessions cost next to nothing and must not flatter the figure.
  const served = Math.max(1, sessions - result.refused.length);
  const stages: StageLoad[] = [...byStage].map(([stage, { cpuMs, seconds }]) => ({
    stage,
    cpuMsPerSessionSecond: round(cpuMs / (served * seconds), 3),
    cpuPercent: round((cpuMs / (seconds * 1000)) * 100),
    ...(loopDelay.has(stage) ? { eventLoopDelayP99Ms: round(loopDelay.get(stage)!) } : {}),
    framesDropped: dropped.get(stage) ?? 0,
  }));
  const refusedBy: Record<string, number> = {};
  for (const r of result.refused) refusedBy[r.stage] = (refusedBy[r.stage] ?? 0) + 1;
  const asked = (sessions - result.refused.length) * opts.turnsPerSession;
  return {
    sessions,
    refused: result.refused.length,
    refusedBy,
    asked,
    answered: result.turns.length,
    lost: result.missing,
    e2eP50: round(percentile(e2e, 50)),
    e2eP99: round(percentile(e2e, 99)),
    overheadP50: round(percentile(overhead, 50)),
    overheadP99: round(percentile(overhead, 99)),
    stages,
    cpuMsPerSessionSecond: round(
      stages.reduce((a, s) => a + s.cpuMsPerSessionSecond, 0),
      3,
    ),
    others,
    result,
  };
}

/** The ramp: each step in turn, until the steps run out or a step loses more than `stopAfterLostShare`. */
export async function runCapacity(
  opts: CapacityOptions & { onStep?: (step: CapacityStep) => void },
): Promise<{ steps: CapacityStep[]; atSlo: number }> {
  const log = opts.log ?? (() => undefined);
  const steps: CapacityStep[] = [];
  for (const sessions of opts.steps) {
    const step = await runCapacityStep(sessions, opts);
    steps.push(step);
    opts.onStep?.(step);
    log(formatStep(step));
    if (opts.stopAfterLostShare !== undefined && step.lost > step.asked * opts.stopAfterLostShare) {
      log(`stopping the ramp: ${step.lost} of ${step.asked} turns lost at ${sessions} sessions`);
      break;
    }
  }
  return { steps, atSlo: sessionsAtSlo(steps) };
}

/** Every session admitted, no turn lost, and e2e p99 within SLO_MARGIN_MS of the first (1-session) step's p50. */
export function meetsSlo(step: CapacityStep, first: CapacityStep): boolean {
  return step.refused === 0 && step.lost === 0 && step.answered > 0 && step.e2eP99 <= first.e2eP50 + SLO_MARGIN_MS;
}

/** The largest step that met the SLO (0 when none did). */
export function sessionsAtSlo(steps: readonly CapacityStep[]): number {
  const first = steps[0];
  if (!first) return 0;
  return Math.max(0, ...steps.filter((s) => meetsSlo(s, first)).map((s) => s.sessions));
}

export function formatStep(s: CapacityStep): string {
  const head =
    `capacity ${String(s.sessions).padStart(3)} sessions (${s.refused} refused${
      s.refused > 0
        ? `: ${Object.entries(s.refusedBy)
            .map(([st, n]) => `${st} ${n}`)
            .join(', ')}`
        : ''
    }): ${s.answered}/${s.asked} turns (${s.lost} lost), ` +
    `e2e p50 ${s.e2eP50} / p99 ${s.e2eP99} ms, overhead p50 ${s.overheadP50} / p99 ${s.overheadP99} ms, ` +
    `CPU ${s.cpuMsPerSessionSecond} ms per session-second`;
  const lines = s.stages.map(
    (st) =>
      `    ${st.stage.padEnd(16)} ${String(st.cpuMsPerSessionSecond).padStart(7)} ms/session-s  ` +
      `${String(st.cpuPercent).padStart(5)} % cpu  loop p99 ${st.eventLoopDelayP99Ms ?? '–'} ms  dropped ${st.framesDropped}`,
  );
  const rest = s.others.map(
    (o) =>
      `    (${o.name}) ${String(o.cpuMsPerSessionSecond).padStart(7)} ms/session-s  ${String(o.cpuPercent).padStart(5)} % cpu`,
  );
  return [head, ...lines, ...rest].join('\n');
}

/** The bench's JSON rows for a capacity run. */
export function capacityRows(steps: readonly CapacityStep[], atSlo: number, instances: number): Row[] {
  const rows: Row[] = [];
  const base = { profile: 'fast-cloud', variant: 'ours' as const };
  for (const s of steps) {
    const at = { ...base, sessions: s.sessions };
    rows.push(
      { ...at, name: 'capacity_sessions_refused', stat: 'count', value: s.refused, unit: 'n' },
      { ...at, name: 'capacity_turns_asked', stat: 'count', value: s.asked, unit: 'n' },
      { ...at, name: 'capacity_turns_answered', stat: 'count', value: s.answered, unit: 'n' },
      { ...at, name: 'capacity_turns_lost', stat: 'count', value: s.lost, unit: 'n' },
      { ...at, name: 'capacity_e2e_ms', stat: 'p50', value: s.e2eP50, unit: 'ms' },
      { ...at, name: 'capacity_e2e_ms', stat: 'p99', value: s.e2eP99, unit: 'ms' },
      { ...at, name: 'capacity_overhead_ms', stat: 'p50', value: s.overheadP50, unit: 'ms' },
      { ...at, name: 'capacity_overhead_ms', stat: 'p99', value: s.overheadP99, unit: 'ms' },
      {
        ...at,
        name: 'cpu_ms_per_session_second',
        stat: 'mean',
        value: s.cpuMsPerSessionSecond,
        unit: 'ms/session-s',
      },
    );
    for (const st of s.stages) {
      const of = { ...at, profile: `service:${st.stage}` };
      rows.push(
        {
          ...of,
          name: 'cpu_ms_per_session_second',
          stat: 'mean',
          value: st.cpuMsPerSessionSecond,
          unit: 'ms/session-s',
        },
        { ...of, name: 'frames_dropped', stat: 'count', value: st.framesDropped, unit: 'n' },
      );
      if (st.eventLoopDelayP99Ms !== undefined) {
        rows.push({ ...of, name: 'event_loop_delay_ms', stat: 'p99', value: st.eventLoopDelayP99Ms, unit: 'ms' });
      }
    }
  }
  for (const s of steps) {
    for (const o of s.others) {
      rows.push({
        ...base,
        sessions: s.sessions,
        profile: `process:${o.name}`,
        name: 'cpu_ms_per_session_second',
        stat: 'mean',
        value: o.cpuMsPerSessionSecond,
        unit: 'ms/session-s',
      });
    }
  }
  rows.push({
    ...base,
    name: 'sessions_at_slo',
    sessions: atSlo,
    instances,
    stat: 'max',
    value: atSlo,
    unit: 'sessions',
  });
  return rows;
}
