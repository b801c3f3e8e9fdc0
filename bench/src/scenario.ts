import { join } from 'node:path';
import { runConversation } from '@va/e2e';
import type { AudioSource } from '@va/protocol';
import type { ReceivedMetric, ReceivedSpan } from '@va/testkit';
import { turnOverheadMs, turnOverheadParts, type OverheadParts } from './overhead.js';
import { BENCH_SENTENCES, PROFILES, VARIANTS, type ProfileName, type VariantName } from './profiles.js';
import { watchProcesses, type ProcessUsage } from './resources.js';

export interface ScenarioOptions {
  profile: ProfileName;
  variant: VariantName;
  sessions: number;
  turnsPerSession: number;
  outDir: string;
  /** Extra environment (tests use it to slow one provider down). */
  env?: Record<string, string>;
  /** Instances of each stage (default 1). */
  instances?: number;
  /** Sessions the pipeline refuses (full) are counted in `refused` instead of failing the run. */
  allowRefused?: boolean;
  onProgress?: (line: string) => void;
}

/** Names of the processes measured besides the stages. */
export const NATS_SERVER = 'nats-server';
export const HARNESS = 'harness';

/** What one agent turn measured, from the gateway's recording and the turn's spans. */
export interface TurnMeasure {
  e2eMs: number;
  firstSource: AudioSource;
  /** Silence between the opener's end and the answer's start; undefined without an opener. */
  gapMs?: number;
  overheadMs?: number;
  overheadParts?: OverheadParts;
}

export interface ScenarioResult {
  turns: TurnMeasure[];
  usage: ProcessUsage[];
  /** Turns the script asked for that produced no measured answer. */
  missing: number;
  /** Every metric the processes exported over OTLP during the run. */
  metrics: ReceivedMetric[];
  /** Sessions the gateway refused because some stage was full (only with `allowRefused`), and which stage. */
  refused: { sessionId: string; stage: string }[];
}

/** Runs `sessions` concurrent sessions of `turnsPerSession` turns through the real services and measures each turn. */
export async function runScenario(opts: ScenarioOptions): Promise<ScenarioResult> {
  const profile = PROFILES[opts.profile];
  const variant = VARIANTS[opts.variant];
  const script = {
    turns: Array.from({ length: opts.turnsPerSession }, (_, i) => ({
      say: BENCH_SENTENCES[i % BENCH_SENTENCES.length]!,
      pauseMs: 400,
    })),
  };
  let watcher: ReturnType<typeof watchProcesses> | undefined;
  const { recordings, spans, metrics, refused } = await runConversation({
    ...(opts.allowRefused ? { allowRefused: true } : {}),
    script,
    outDir: join(opts.outDir, `${opts.profile}-${opts.variant}-${opts.sessions}`),
    sessionId: `b-${opts.variant}-${opts.sessions}`,
    sessions: opts.sessions,
    recordAudio: false,
    ...(opts.instances ? { instances: opts.instances } : {}),
    fastLlm: profile.fastLlm,
    deepLlm: profile.deepLlm,
    ...(variant.stages ? { stages: variant.stages } : {}),
    env: {
      VA_SESSION_CAPACITY: '1000',
      GATEWAY_STAGGER_MS: String(Math.max(5, Math.round(2000 / opts.sessions))),
      ...profile.env,
      ...variant.env,
      ...opts.env,
    },
    onRunning: (stages, pipeline) =>
      (watcher = watchProcesses([
        ...stages.map((s) => ({ name: s.stage, pid: s.pid })),
        // Not stages, but on the same cores: the bus, and this process (the fake LLM servers, the span collector).
        ...('nodes' in pipeline.nats ? pipeline.nats.nodes : [pipeline.nats]).map((n) => ({
          name: NATS_SERVER,
          pid: n.pid,
        })),
        { name: HARNESS, pid: process.pid },
      ])),
    ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
  });
  const usage = (await watcher?.stop()) ?? [];
  const byTrace = new Map<string, ReceivedSpan[]>();
  for (const s of spans) byTrace.set(s.traceId, [...(byTrace.get(s.traceId) ?? []), s]);
  const turns: TurnMeasure[] = [];
  for (const rec of recordings) {
    for (const t of rec.turns) {
      if (t.e2eMs === null || t.interrupted) continue;
      const segs = rec.segments.filter((s) => s.turnId === t.turnId);
      const fast = segs.filter((s) => s.source === 'fast');
      const deep = segs.filter((s) => s.source === 'deep');
      const traceSpans = byTrace.get(t.traceId) ?? [];
      const overhead = turnOverheadMs(traceSpans);
      const parts = turnOverheadParts(traceSpans);
      turns.push({
        e2eMs: t.e2eMs,
        firstSource: segs[0]?.source ?? 'deep',
        ...(fast.length > 0 && deep.length > 0 ? { gapMs: deep[0]!.startMs - fast[fast.length - 1]!.endMs } : {}),
        ...(overhead !== undefined ? { overheadMs: overhead } : {}),
        ...(parts ? { overheadParts: parts } : {}),
      });
    }
  }
  const admitted = opts.sessions - refused.length;
  return {
    turns,
    usage,
    missing: admitted * opts.turnsPerSession - turns.length,
    metrics,
    refused: refused.map((r) => ({ sessionId: r.sessionId, stage: r.stage })),
  };
}
