import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SessionRecording } from '@va/protocol';
import { METRIC } from '@va/telemetry';
import { spawnNode, type ChildHandle } from '@va/testkit';
import { serviceEntry, startPipeline, type Pipeline } from './pipeline.js';

/**
 * `npm run soak`: N sessions for M minutes through the real stages (the media gateway playing a long script for
 * every session, round after round), sampling every process's health details (heap in use, NATS subscriptions,
 * active handles) and its OS figures (RSS, threads) every few seconds. The stages run with `--expose-gc` and each
 * sample asks for a full collection first (`/readyz?gc=1`), so the heap figure is the live heap — what grows when
 * memory leaks — not a point on the collector's sawtooth. After a warm-up, the live heap of each process should
 * stay flat (within ±10 % of the first post-warm-up sample); once the sessions close, subscriptions and handles
 * should be back at their idle values.
 */

export interface SoakOptions {
  sessions: number;
  minutes: number;
  /** Default: 20 % of the run, at most 120 s. */
  warmupSec?: number;
  /** Default 10 s. */
  sampleEverySec?: number;
  /**
   * `cloud` (default): timed STT and fake TTS with cloud-like timing (the bench's fast-cloud profile) — what fits
   * 100 sessions on a small machine; `offline`: pocketsphinx and flite, as the demo (a few sessions per core).
   */
  profile?: 'cloud' | 'offline';
  /** Heap flatness goal, as a fraction of the reference sample (default 0.1). */
  heapTolerance?: number;
  env?: Record<string, string>;
  onProgress?: (line: string) => void;
}

export interface SoakSample {
  /** Seconds since the load started (negative: idle, before it). */
  atSec: number;
  process: string;
  pid: number;
  phase: 'idle' | 'load' | 'closed';
  sessions?: number;
  /**
   * The live heap: heap in use right after a full collection. (Without `--expose-gc`, the lowest heap in use
   * read since the previous sample — a single uncollected read lands anywhere on the sawtooth, ±50 % here.)
   */
  heapUsedBytes?: number;
  /** True when `heapUsedBytes` was read after a full collection. */
  collected?: boolean;
  /** Under load: the highest heap in use read since the previous sample (read every second, not collected). */
  heapPeakBytes?: number;
  subscriptions?: number;
  activeResources?: number;
  rssBytes?: number;
  threads?: number;
}

export interface SoakProcessReport {
  process: string;
  pid: number;
  /** Idle figures before the first session. */
  idle: { subscriptions?: number; activeResources?: number; threads?: number; heapUsedBytes?: number };
  /** The first live heap after the warm-up, and the range of the live heap under load after it (see SoakSample). */
  heapRefBytes?: number;
  heapMinBytes?: number;
  heapMaxBytes?: number;
  /** (min / ref − 1, max / ref − 1). */
  heapRangePct?: [number, number];
  /** Least-squares slope of the post-warm-up heap samples. */
  heapSlopeMbPerMin?: number;
  heapFlat?: boolean;
  /** The highest heap read under load after the warm-up (the top of the sawtooth). */
  heapPeakBytes?: number;
  rssRefBytes?: number;
  rssMaxBytes?: number;
  maxSessions?: number;
  /** After every session closed. */
  final: { subscriptions?: number; activeResources?: number; threads?: number; heapUsedBytes?: number };
  backToIdle?: boolean;
}

export interface SoakReport {
  sessions: number;
  minutes: number;
  profile: 'cloud' | 'offline';
  warmupSec: number;
  sampleEverySec: number;
  heapTolerance: number;
  rounds: number;
  sessionsRun: number;
  turnsAnswered: number;
  /** Voice-to-voice latency of the answered turns (ms), to see the load was real. */
  e2eP50Ms?: number;
  e2eP90Ms?: number;
  loadSec: number;
  /**
   * What each stage dropped or refused over the run, from the metrics it exported over OTLP (their last values):
   * `va.audio.dropped` (e.g. `behind`: a stage slower than real time), `va.messages.dropped`, `va.messages.rejected`.
   */
  drops: Record<string, { audioDropped: number; messagesDropped: number; rejected: number }>;
  processes: SoakProcessReport[];
  samples: SoakSample[];
}

const SENTENCES = [
  'what is the weather like today',
  'set an alarm for seven in the morning',
  'can you recommend a good book',
  'how far is the nearest train station',
  'remind me to call my sister',
  'what should I pack for a hike',
];

/** Providers with cloud-like timing and no heavy local models (bench fast-cloud). */
const CLOUD_ENV = {
  STT_PROVIDER: 'timed',
  TIMED_STT_FINAL_MS: '100',
  TIMED_STT_PARTIAL_MS: '100',
  TIMED_STT_TEXTS: JSON.stringify(SENTENCES),
  TTS_PROVIDER: 'fake',
  TTS_FAKE_TTFB_MS: '75',
  TTS_FAKE_MS_PER_CHAR: '12',
};

interface Details {
  sessions?: number;
  heapUsedBytes?: number;
  collected?: boolean;
  subscriptions?: number;
  activeResources?: number;
}

async function procStatus(pid: number): Promise<{ rssBytes?: number; threads?: number }> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const kb = /^VmRSS:\s+(\d+) kB/m.exec(status)?.[1];
    const threads = /^Threads:\s+(\d+)/m.exec(status)?.[1];
    return {
      ...(kb ? { rssBytes: Number(kb) * 1024 } : {}),
      ...(threads ? { threads: Number(threads) } : {}),
    };
  } catch {
    return {};
  }
}

async function readiness(url: string | undefined, collect = false): Promise<Details> {
  if (!url) return {};
  try {
    const res = await fetch(`${url}/readyz${collect ? '?gc=1' : ''}`, { signal: AbortSignal.timeout(5000) });
    return (await res.json()) as Details;
  } catch {
    return {};
  }
}

/** The last exported value of a counter per service, summed over its attribute sets. */
function exportedDrops(pipeline: Pipeline): SoakReport['drops'] {
  const names = {
    [METRIC.audioDropped]: 'audioDropped',
    [METRIC.messagesDropped]: 'messagesDropped',
    [METRIC.messagesRejected]: 'rejected',
  } as const;
  const out: SoakReport['drops'] = {};
  for (const m of pipeline.otlp.metrics()) {
    const key = names[m.name as keyof typeof names];
    if (!key) continue;
    const total = (m.dataPoints as { asInt?: string | number; asDouble?: number }[]).reduce(
      (a, p) => a + Number(p.asInt ?? p.asDouble ?? 0),
      0,
    );
    out[m.serviceName] ??= { audioDropped: 0, messagesDropped: 0, rejected: 0 };
    out[m.serviceName]![key] = total;
  }
  return out;
}

function percentile(sorted: number[], p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function slopePerMin(points: { x: number; y: number }[]): number | undefined {
  if (points.length < 2) return undefined;
  const n = points.length;
  const mx = points.reduce((a, p) => a + p.x, 0) / n;
  const my = points.reduce((a, p) => a + p.y, 0) / n;
  const sxy = points.reduce((a, p) => a + (p.x - mx) * (p.y - my), 0);
  const sxx = points.reduce((a, p) => a + (p.x - mx) ** 2, 0);
  return sxx === 0 ? 0 : (sxy / sxx) * 60;
}

export async function runSoak(opts: SoakOptions): Promise<SoakReport> {
  const progress = opts.onProgress ?? (() => undefined);
  const profile = opts.profile ?? 'cloud';
  const loadSec = Math.round(opts.minutes * 60);
  // Long enough for the first major collections: before them the heap still holds start-up garbage (~50 MB here).
  const warmupSec = opts.warmupSec ?? Math.min(120, Math.round(loadSec * 0.2));
  const everySec = opts.sampleEverySec ?? 10;
  const tolerance = opts.heapTolerance ?? 0.1;
  const outDir = join(tmpdir(), `va-soak-${process.pid}-${Date.now().toString(36)}`);
  await mkdir(outDir, { recursive: true });

  const pipeline: Pipeline = await startPipeline({
    fastLlm: { ttftMs: 120, tokensPerSecond: 150 },
    deepLlm: { ttftMs: 160, tokensPerSecond: 150 },
    maxLifetimeSec: loadSec + 900,
    onProgress: progress,
    env: {
      VA_HEALTH_PORT: '0',
      VA_HEALTH_HOST: '127.0.0.1',
      VA_SESSION_CAPACITY: String(opts.sessions + 10),
      // A leak test holds its sessions whatever the latency: the load limits (admission) are not what it measures.
      VA_LOAD_MAX_EVENT_LOOP_DELAY_MS: '60000',
      VA_LOAD_MAX_CPU: '0',
      // Lets each sample collect first (`/readyz?gc=1`) and read the live heap.
      NODE_OPTIONS: [process.env.NODE_OPTIONS, '--expose-gc'].filter(Boolean).join(' '),
      ...(profile === 'cloud' ? CLOUD_ENV : { STT_PROVIDER: 'local', TTS_PROVIDER: 'local' }),
      ...opts.env,
    },
  });
  const samples: SoakSample[] = [];
  let gateway: ChildHandle | undefined;
  try {
    const urls = new Map<string, string>();
    for (const s of pipeline.stages) {
      const line = await s.child.waitForJson<{ url: string }>((l) => l.msg === 'health endpoint ready', 30_000);
      urls.set(s.stage, line.url);
    }
    // Stages keep every stdout line in this process: long runs must not grow the soak driver itself.
    const trim = setInterval(() => {
      for (const s of [...pipeline.stages.map((x) => x.child), ...(gateway ? [gateway] : [])]) {
        if (s.lines.length > 5000) s.lines.splice(0, s.lines.length - 1000);
        if (s.stderr.length > 5000) s.stderr.splice(0, s.stderr.length - 1000);
      }
    }, 5000);
    trim.unref();

    let t0 = performance.now();
    /** Heap lows and highs per stage since the last sample, read every second under load. */
    const between = new Map<string, { min: number; max: number }>();
    const readHeaps = async () => {
      await Promise.all(
        pipeline.stages.map(async (s) => {
          const heap = (await readiness(urls.get(s.stage))).heapUsedBytes;
          if (heap === undefined) return;
          const w = between.get(s.stage);
          between.set(s.stage, { min: Math.min(w?.min ?? heap, heap), max: Math.max(w?.max ?? heap, heap) });
        }),
      );
    };
    const sampleAll = async (phase: SoakSample['phase']) => {
      const atSec = Math.round((performance.now() - t0) / 100) / 10;
      const procs = [
        ...pipeline.stages.map((s) => ({ name: s.stage, pid: s.pid, url: urls.get(s.stage) })),
        ...(gateway && phase === 'load' ? [{ name: 'media-gateway', pid: gateway.pid, url: undefined }] : []),
      ];
      const got = await Promise.all(
        procs.map(async (p) => {
          const [d, os] = await Promise.all([readiness(p.url, true), procStatus(p.pid)]);
          const sample: SoakSample = { atSec, process: p.name, pid: p.pid, phase, ...os };
          if (d.sessions !== undefined) sample.sessions = d.sessions;
          if (d.heapUsedBytes !== undefined) {
            const w = phase === 'load' ? between.get(p.name) : undefined;
            sample.heapUsedBytes = d.collected ? d.heapUsedBytes : Math.min(w?.min ?? d.heapUsedBytes, d.heapUsedBytes);
            if (d.collected) sample.collected = true;
            if (phase === 'load') sample.heapPeakBytes = Math.max(w?.max ?? d.heapUsedBytes, d.heapUsedBytes);
            between.delete(p.name);
          }
          if (d.subscriptions !== undefined) sample.subscriptions = d.subscriptions;
          if (d.activeResources !== undefined) sample.activeResources = d.activeResources;
          return sample;
        }),
      );
      samples.push(...got);
      return got;
    };

    // Idle: start-up settled, no session.
    await new Promise((r) => setTimeout(r, 3000));
    t0 = performance.now();
    for (let i = 0; i < 3; i++) {
      await sampleAll('idle');
      await new Promise((r) => setTimeout(r, 500));
    }
    progress(`idle figures taken; ${opts.sessions} sessions for ${opts.minutes} min (${profile} providers)`);

    // Load: rounds of one gateway playing a long script for every session, until the time is up.
    const script = {
      turns: Array.from({ length: 100 }, (_, i) => ({ say: SENTENCES[i % SENTENCES.length]!, pauseMs: 600 })),
    };
    const scriptPath = join(outDir, 'script.json');
    await writeFile(scriptPath, JSON.stringify(script));
    t0 = performance.now();
    const deadline = t0 + loadSec * 1000;
    let sampling = true;
    const sampler = (async () => {
      let next = t0;
      while (sampling) {
        await sampleAll('load');
        const last = samples.filter((s) => s.phase === 'load' && s.atSec === samples[samples.length - 1]!.atSec);
        const sessions = last.find((s) => s.process === 'stt')?.sessions;
        progress(
          `t=${Math.round((performance.now() - t0) / 1000)} s: ${sessions ?? '?'} sessions; live heap..peak MB ${last
            .filter((s) => s.heapUsedBytes !== undefined)
            .map(
              (s) =>
                `${s.process} ${(s.heapUsedBytes! / 1e6).toFixed(0)}..${((s.heapPeakBytes ?? 0) / 1e6).toFixed(0)}`,
            )
            .join(', ')}`,
        );
        next += everySec * 1000;
        while (sampling && performance.now() < next) {
          await readHeaps();
          await new Promise((r) => setTimeout(r, 1000));
        }
      }
    })();

    let rounds = 0;
    while (performance.now() < deadline - 5000) {
      rounds++;
      gateway = spawnNode(serviceEntry('media-gateway'), {
        name: 'media-gateway',
        maxLifetimeSec: loadSec + 300,
        env: {
          ...pipeline.env,
          LOG_LEVEL: 'warn',
          GATEWAY_SCRIPT: scriptPath,
          GATEWAY_OUT_DIR: outDir,
          // The soak checks what was heard: the session file must hold the words (off by default).
          GATEWAY_RECORD_TEXT: '1',
          GATEWAY_SESSION_ID: `soak-r${rounds}`,
          GATEWAY_SESSIONS: String(opts.sessions),
          GATEWAY_STAGGER_MS: String(Math.max(5, Math.round(2000 / opts.sessions))),
          GATEWAY_RECORD_AUDIO: '0',
        },
      });
      const left = deadline - performance.now();
      const ended = await Promise.race([
        gateway.exited.then(() => true),
        new Promise<false>((r) => setTimeout(() => r(false), Math.max(0, left)).unref()),
      ]);
      // Time is up mid-round: SIGTERM closes every open session, as a gateway shutting down does.
      if (!ended) await gateway.stop(60_000);
      progress(`round ${rounds} ${ended ? 'finished' : 'stopped at the deadline'}`);
    }
    sampling = false;
    await sampler;
    gateway = undefined;
    const loadEnd = performance.now();

    // Closed: every session gone; let the stages settle back to idle (up to a minute).
    let closed: SoakSample[] = [];
    const idleOf = (p: string) => samples.filter((s) => s.phase === 'idle' && s.process === p);
    for (let i = 0; i < 60; i++) {
      closed = await sampleAll('closed');
      const settled = closed.every((c) => {
        const idle = idleOf(c.process);
        return (
          c.sessions === 0 &&
          c.subscriptions === idle[idle.length - 1]?.subscriptions &&
          (c.activeResources ?? 0) <= Math.min(...idle.map((s) => s.activeResources ?? Infinity)) + 2
        );
      });
      if (settled) break;
      await new Promise((r) => setTimeout(r, 1000));
    }

    // Turns answered, from the gateway's recordings.
    const e2e: number[] = [];
    let sessionsRun = 0;
    for (const f of await readdir(outDir)) {
      if (!f.endsWith('.session.json')) continue;
      try {
        const rec = SessionRecording.parse(JSON.parse(await readFile(join(outDir, f), 'utf8')));
        sessionsRun++;
        for (const t of rec.turns) if (t.e2eMs !== null) e2e.push(t.e2eMs);
      } catch {
        // a recording cut short by the deadline
      }
    }
    e2e.sort((a, b) => a - b);

    const processes = pipeline.stages.map((s): SoakProcessReport => {
      const mine = samples.filter((x) => x.process === s.stage);
      const idle = mine.filter((x) => x.phase === 'idle');
      const load = mine.filter((x) => x.phase === 'load');
      const post = load.filter((x) => x.atSec >= warmupSec && x.heapUsedBytes !== undefined);
      const ref = post[0];
      const heaps = post.map((x) => x.heapUsedBytes!);
      const last = closed.find((x) => x.process === s.stage);
      const lastIdle = idle[idle.length - 1];
      const idleRes = Math.min(...idle.map((x) => x.activeResources ?? Infinity));
      const idleThreads = Math.max(...idle.map((x) => x.threads ?? -Infinity));
      const report: SoakProcessReport = {
        process: s.stage,
        pid: s.pid,
        idle: {
          ...(lastIdle?.subscriptions !== undefined ? { subscriptions: lastIdle.subscriptions } : {}),
          ...(Number.isFinite(idleRes) ? { activeResources: idleRes } : {}),
          ...(Number.isFinite(idleThreads) ? { threads: idleThreads } : {}),
          ...(lastIdle?.heapUsedBytes !== undefined ? { heapUsedBytes: lastIdle.heapUsedBytes } : {}),
        },
        final: {
          ...(last?.subscriptions !== undefined ? { subscriptions: last.subscriptions } : {}),
          ...(last?.activeResources !== undefined ? { activeResources: last.activeResources } : {}),
          ...(last?.threads !== undefined ? { threads: last.threads } : {}),
          ...(last?.heapUsedBytes !== undefined ? { heapUsedBytes: last.heapUsedBytes } : {}),
        },
        maxSessions: Math.max(0, ...load.map((x) => x.sessions ?? 0)),
      };
      if (ref?.heapUsedBytes) {
        const min = Math.min(...heaps);
        const max = Math.max(...heaps);
        report.heapPeakBytes = Math.max(...post.map((x) => x.heapPeakBytes ?? 0));
        report.heapRefBytes = ref.heapUsedBytes;
        report.heapMinBytes = min;
        report.heapMaxBytes = max;
        report.heapRangePct = [
          Math.round((min / ref.heapUsedBytes - 1) * 1000) / 10,
          Math.round((max / ref.heapUsedBytes - 1) * 1000) / 10,
        ];
        report.heapFlat = min >= ref.heapUsedBytes * (1 - tolerance) && max <= ref.heapUsedBytes * (1 + tolerance);
        const slope = slopePerMin(post.map((x) => ({ x: x.atSec, y: x.heapUsedBytes! / 1e6 })));
        if (slope !== undefined) report.heapSlopeMbPerMin = Math.round(slope * 100) / 100;
      }
      const rss = post.map((x) => x.rssBytes).filter((v): v is number => v !== undefined);
      if (rss.length > 0) {
        report.rssRefBytes = rss[0]!;
        report.rssMaxBytes = Math.max(...rss);
      }
      if (last) {
        report.backToIdle =
          last.sessions === 0 &&
          last.subscriptions === report.idle.subscriptions &&
          (last.activeResources ?? Infinity) <= (report.idle.activeResources ?? -Infinity) + 2 &&
          (last.threads ?? Infinity) <= (report.idle.threads ?? -Infinity);
      }
      return report;
    });

    return {
      sessions: opts.sessions,
      minutes: opts.minutes,
      profile,
      warmupSec,
      sampleEverySec: everySec,
      heapTolerance: tolerance,
      rounds,
      sessionsRun,
      turnsAnswered: e2e.length,
      drops: exportedDrops(pipeline),
      ...(e2e.length > 0 ? { e2eP50Ms: percentile(e2e, 50)!, e2eP90Ms: percentile(e2e, 90)! } : {}),
      loadSec: Math.round((loadEnd - t0) / 1000),
      processes,
      samples,
    };
  } finally {
    await gateway?.stop(10_000);
    await pipeline.stop();
    await rm(outDir, { recursive: true, force: true });
  }
}

/** The soak's result as a table: per process, heap under load vs the first post-warm-up sample, and back to idle. */
export function formatSoakTable(r: SoakReport): string {
  const mb = (b?: number) => (b === undefined ? '?' : (b / 1e6).toFixed(1));
  const pct = (p?: [number, number]) => (p ? `${p[0] >= 0 ? '+' : ''}${p[0]}%..${p[1] >= 0 ? '+' : ''}${p[1]}%` : '?');
  const pair = (a?: number, b?: number) => `${a ?? '?'}→${b ?? '?'}`;
  const lines = [
    `soak: ${r.sessions} sessions × ${r.minutes} min (${r.profile} providers), ${r.rounds} round(s), ${r.sessionsRun} sessions run, ` +
      `${r.turnsAnswered} turns answered${r.e2eP50Ms !== undefined ? ` (voice-to-voice p50 ${Math.round(r.e2eP50Ms)} ms, p90 ${Math.round(r.e2eP90Ms!)} ms)` : ''}; ` +
      `samples every ${r.sampleEverySec} s, warm-up ${r.warmupSec} s, heap goal ±${Math.round(r.heapTolerance * 100)} %`,
    r.samples.some((x) => x.phase === 'load' && x.collected)
      ? `heap = live heap (in use right after a full collection, /readyz?gc=1); peak = highest read after the warm-up`
      : `heap = floor of the heap in use between samples (read every second); peak = highest read after the warm-up`,
    `process          sess  heap ref MB  min..max MB   range vs ref       slope MB/min  flat  peak MB  rss max MB  subs idle→closed  res idle→closed  threads idle→closed  back`,
    ...r.processes.map(
      (p) =>
        `${p.process.padEnd(16)} ${String(p.maxSessions ?? '?').padStart(4)}  ${mb(p.heapRefBytes).padStart(11)}  ` +
        `${`${mb(p.heapMinBytes)}..${mb(p.heapMaxBytes)}`.padEnd(12)}  ${pct(p.heapRangePct).padEnd(17)}  ` +
        `${String(p.heapSlopeMbPerMin ?? '?').padStart(12)}  ${(p.heapFlat === undefined ? '?' : p.heapFlat ? 'yes' : 'NO').padEnd(4)}  ` +
        `${mb(p.heapPeakBytes).padStart(7)}  ${mb(p.rssMaxBytes).padStart(10)}  ${pair(p.idle.subscriptions, p.final.subscriptions).padEnd(16)}  ` +
        `${pair(p.idle.activeResources, p.final.activeResources).padEnd(15)}  ${pair(p.idle.threads, p.final.threads).padEnd(19)}  ` +
        `${p.backToIdle === undefined ? '?' : p.backToIdle ? 'yes' : 'NO'}`,
    ),
  ];
  const drops = Object.entries(r.drops).filter(([, d]) => d.audioDropped + d.messagesDropped + d.rejected > 0);
  lines.push(
    drops.length === 0
      ? 'dropped or refused: nothing (va.audio.dropped, va.messages.dropped, va.messages.rejected all 0)'
      : `dropped or refused: ${drops
          .map(([p, d]) => `${p} audio ${d.audioDropped}, messages ${d.messagesDropped}, rejected ${d.rejected}`)
          .join('; ')}`,
  );
  return lines.join('\n');
}
