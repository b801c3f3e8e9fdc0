// npm run bench [-- --quick] [--json FILE] [--svg FILE] [--out DIR]
import { writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { parseArgs } from 'node:util';
import { measureBusHop, measureIdleHop } from './bus-hop.js';
import { CAPACITY_STEPS, capacityRows, runCapacity } from './capacity.js';
import { capacityMarkdown } from './capacity-report.js';
import { measureCtxGet } from './ctx-get.js';
import { rowsMarkdown } from './markdown.js';
import { ensurePeerInstalled, runLivekitPeer } from './peer.js';
import { distributionSvg, type Series } from './plot.js';
import type { ProfileName, VariantName } from './profiles.js';
import { capacitySvg } from './plot.js';
import { eotBench } from './eot/cli.js';
import { measureSttMemory } from './stt-memory.js';
import type { ProcessUsage } from './resources.js';
import { runScenario, type TurnMeasure } from './scenario.js';
import { distributionRows, percentile, round, type Row } from './stats.js';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    json: { type: 'string' },
    svg: { type: 'string' },
    markdown: { type: 'string' },
    peer: { type: 'boolean', default: false },
    capacity: { type: 'boolean', default: false },
    'stt-memory': { type: 'boolean', default: false },
    eot: { type: 'boolean', default: false },
    corpus: { type: 'string' },
    voices: { type: 'string' },
    seed: { type: 'string', default: '1' },
    limit: { type: 'string' },
    recognisers: { type: 'string', default: 'exact,pocketsphinx' },
    takes: { type: 'string' },
    instances: { type: 'string', default: '1' },
    steps: { type: 'string' },
    'capacity-md': { type: 'string' },
    'capacity-svg': { type: 'string' },
    out: { type: 'string', default: 'out/bench' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (args.help) {
  console.log(
    'usage: npm run bench -- [--quick] [--capacity [--instances N] [--steps 1,25,50]] [--json FILE] [--svg FILE]\n' +
      '                        [--markdown FILE] [--capacity-md FILE] [--capacity-svg FILE] [--peer] [--out DIR]\n' +
      '                        [--stt-memory]\n' +
      '       npm run bench -- --eot [--corpus FILE] [--voices flite:kal,espeak-ng:en-us@1.1] [--seed N] [--limit N]\n' +
      '                        [--recognisers exact,pocketsphinx] [--json FILE] [--svg FILE] [--markdown FILE]\n' +
      '                        [--takes FILE.jsonl]\n' +
      '  --capacity alone runs only the capacity ramp; a full run (no --quick) includes it.\n' +
      '  --stt-memory alone runs only the memory of stt before, during and after 6 offline sessions; a full run includes it.',
  );
  process.exit(0);
}
if (args.eot) {
  await eotBench(args);
  process.exit(0);
}

const quick = args.quick;
/** `--capacity` alone: only the ramp. */
const capacityOnly = args.capacity && !quick;
const instances = Number(args.instances);
if (!Number.isInteger(instances) || instances < 1) {
  console.error(`--instances: a whole number ≥ 1, not ${args.instances}`);
  process.exit(2);
}
const capacitySteps = args.steps ? args.steps.split(',').map(Number) : [...CAPACITY_STEPS];
if (capacitySteps.some((n) => !Number.isInteger(n) || n < 1)) {
  console.error(`--steps: session counts ≥ 1 separated by commas, not ${args.steps}`);
  process.exit(2);
}
// Latency runs: [profile, sessions, turns per session] — ≥ 50 turns each in a full run.
const latencyRuns: [ProfileName, number, number][] = quick
  ? [
      ['fast-cloud', 3, 3],
      ['offline', 1, 3],
    ]
  : [
      ['fast-cloud', 10, 5],
      ['typical-cloud', 10, 5],
      ['offline', 4, 13],
    ];
// A full run takes overhead from the capacity ramp; quick runs measure it on their own.
const overheadSessions = quick ? [1, 20] : [];
// Quick runs skip the offline baseline: the cloud profile already shows the ratio.
const variantsFor = (profile: ProfileName): VariantName[] =>
  quick && profile === 'offline' ? ['ours'] : ['ours', 'baseline'];

const rows: Row[] = [];
const plotted: Series[] = [];
const log = (line: string) => console.log(line);
const started = Date.now();

log(
  `voice-agent bench (${quick ? 'quick' : 'full'}) on ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}`,
);

const sttMemoryOnly = args['stt-memory'] && !quick && !args.capacity;
if (args.peer) await ensurePeerInstalled();
if (!sttMemoryOnly) {
  if (!capacityOnly) await latencyAndOverhead();
  // The capacity ramp judges the overhead goal: measure the hop floor beside it.
  else await idleHop();
  if (args.capacity || !quick) await capacity();
}
if (args['stt-memory'] || (!quick && !capacityOnly)) await sttMemory();

/** Does stt go back to its idle memory when its sessions close (pooled decoders freed)? */
async function sttMemory(): Promise<void> {
  const m = await measureSttMemory(6, args.out);
  for (const [stat, value] of [
    ['idle', m.idleMb],
    ['max', m.peakMb],
    ['after_close', m.afterCloseMb],
  ] as const) {
    rows.push({ name: 'rss_mb', profile: 'service:stt', sessions: m.sessions, stat, value, unit: 'MB' });
  }
  log(
    `stt memory, ${m.sessions} offline sessions: idle ${m.idleMb} MB, peak ${m.peakMb} MB, ` +
      `${m.afterCloseMb} MB 13 s after the last closed`,
  );
}

/** The floor under a turn's hops: one bare message between two idle processes (see measureIdleHop). */
async function idleHop(): Promise<void> {
  const idle = await measureIdleHop(quick ? 30 : 60);
  for (const [stat, value] of [
    ['p50', idle.p50],
    ['p99', idle.p99],
  ] as const) {
    rows.push({ name: 'bus_hop_idle_us', profile: 'none', sessions: 1, stat, value: round(value), unit: 'us' });
  }
  log(
    `bus hop between idle processes (the floor of each turn hop): p50 ${round(idle.p50)} µs, p99 ${round(idle.p99)} µs`,
  );
}

async function latencyAndOverhead(): Promise<void> {
  const hop = await measureBusHop(quick ? 2000 : 10_000);
  rows.push({ name: 'bus_hop_us', profile: 'none', sessions: 1, stat: 'p50', value: round(hop.p50), unit: 'us' });
  rows.push({ name: 'bus_hop_us', profile: 'none', sessions: 1, stat: 'p99', value: round(hop.p99), unit: 'us' });
  log(`bus hop (640-byte frame + headers): p50 ${round(hop.p50)} µs, p99 ${round(hop.p99)} µs over ${hop.count}`);
  await idleHop();

  const ctxGet = await measureCtxGet(quick ? 20 : 50, quick ? 20 : 40);
  for (const [name, p50, p99] of [
    ['ctx_get_service_ms', ctxGet.serviceP50, ctxGet.serviceP99],
    ['ctx_get_ms', ctxGet.p50, ctxGet.p99],
    ['nats_request_floor_ms', ctxGet.floorP50, ctxGet.floorP99],
  ] as const) {
    for (const [stat, value] of [
      ['p50', p50],
      ['p99', p99],
    ] as const) {
      rows.push({ name, profile: 'none', sessions: ctxGet.sessions, stat, value: round(value, 3), unit: 'ms' });
    }
  }
  log(
    `ctx.get (${ctxGet.sessions} sessions × ${ctxGet.turns} turns): in session-context p50 ${round(ctxGet.serviceP50, 3)} ms, ` +
      `p99 ${round(ctxGet.serviceP99, 3)} ms; round trip p50 ${round(ctxGet.p50, 2)} ms, p99 ${round(ctxGet.p99, 2)} ms ` +
      `(bare NATS request p50 ${round(ctxGet.floorP50, 2)}, p99 ${round(ctxGet.floorP99, 2)}) over ${ctxGet.count}`,
  );

  const e2eOf = (turns: TurnMeasure[]) => turns.map((t) => t.e2eMs);
  for (const [profile, sessions, turns] of latencyRuns) {
    const p50: Partial<Record<VariantName, number>> = {};
    for (const variant of variantsFor(profile)) {
      const result = await runScenario({ profile, variant, sessions, turnsPerSession: turns, outDir: args.out });
      const base = { profile, sessions, variant } as const;
      rows.push(...distributionRows({ ...base, name: 'e2e_ms', unit: 'ms' }, e2eOf(result.turns)));
      const openers = result.turns.filter((t) => t.firstSource === 'fast').map((t) => t.e2eMs);
      if (openers.length > 0)
        rows.push(...distributionRows({ ...base, name: 'first_audio_ms', unit: 'ms' }, openers, ['p50', 'p90']));
      const gaps = result.turns.flatMap((t) => (t.gapMs === undefined ? [] : [t.gapMs]));
      if (gaps.length > 0)
        rows.push(...distributionRows({ ...base, name: 'answer_gap_ms', unit: 'ms' }, gaps, ['p50', 'p90']));
      if (result.missing > 0)
        rows.push({ ...base, name: 'turns_missing', stat: 'count', value: result.missing, unit: 'n' });
      p50[variant] = percentile(e2eOf(result.turns), 50);
      plotted.push({ label: `${profile} · ${variant}`, values: e2eOf(result.turns) });
      log(
        `${profile} ${variant}: e2e p50 ${round(p50[variant]!)} ms, p90 ${round(percentile(e2eOf(result.turns), 90))} ms over ${result.turns.length} turns (${sessions} sessions)`,
      );
    }
    if (args.peer && profile !== 'offline') {
      // The real LiveKit Agents, same profile, same run (one session, turns in sequence).
      const e2e = await runLivekitPeer(profile, quick ? 8 : 50);
      rows.push(...distributionRows({ name: 'e2e_ms', profile, sessions: 1, variant: 'livekit', unit: 'ms' }, e2e));
      plotted.push({ label: `${profile} · livekit`, values: e2e });
      const lk = percentile(e2e, 50);
      rows.push({
        name: 'e2e_ratio_livekit',
        profile,
        sessions,
        stat: 'p50',
        value: round((p50.ours ?? NaN) / lk, 3),
        unit: 'ours/livekit',
      });
      log(`${profile} livekit: e2e p50 ${round(lk)} ms, p90 ${round(percentile(e2e, 90))} ms over ${e2e.length} turns`);
    }
    if (p50.ours !== undefined && p50.baseline !== undefined) {
      rows.push({
        name: 'e2e_ratio',
        profile,
        sessions,
        stat: 'p50',
        value: round(p50.ours / p50.baseline, 3),
        unit: 'ours/baseline',
      });
    }
  }

  for (const sessions of overheadSessions) {
    const result = await runScenario({
      profile: 'fast-cloud',
      variant: 'ours',
      sessions,
      turnsPerSession: 3,
      outDir: args.out,
    });
    const overhead = result.turns.flatMap((t) => (t.overheadMs === undefined ? [] : [t.overheadMs]));
    rows.push(
      ...distributionRows(
        { name: 'overhead_ms', profile: 'fast-cloud', sessions, variant: 'ours', unit: 'ms' },
        overhead,
        ['p50', 'p99'],
      ),
    );
    log(
      `overhead at ${sessions} sessions: p50 ${round(percentile(overhead, 50))} ms, p99 ${round(percentile(overhead, 99))} ms over ${overhead.length} turns`,
    );
    pushOverheadParts(sessions, result.turns);
    if (sessions === overheadSessions[overheadSessions.length - 1]) pushUsage(sessions, result.usage);
  }
}

/** Where the overhead goes: each hop and the history fetch, so a regression points at its stage. */
function pushOverheadParts(sessions: number, turns: readonly TurnMeasure[]): void {
  for (const part of ['turnHop', 'history', 'replyHop', 'audioHop'] as const) {
    const values = turns.flatMap((t) => (t.overheadParts ? [t.overheadParts[part]] : []));
    const name = `overhead_${part.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}_ms`;
    const base = { name, profile: 'fast-cloud', sessions, variant: 'ours' as const, unit: 'ms' };
    rows.push(...distributionRows(base, values, ['p50', 'p99']).filter((r) => r.stat !== 'count'));
  }
}

function pushUsage(sessions: number, usage: readonly ProcessUsage[]): void {
  for (const u of usage) {
    rows.push({
      name: 'cpu_percent',
      profile: `service:${u.name}`,
      sessions,
      stat: 'mean',
      value: u.cpuPercent,
      unit: '%',
    });
    rows.push({ name: 'rss_mb', profile: `service:${u.name}`, sessions, stat: 'max', value: u.maxRssMb, unit: 'MB' });
    log(`  ${u.name.padEnd(16)} cpu ${String(u.cpuPercent).padStart(5)} %  rss ${u.maxRssMb} MB`);
  }
}

/** The capacity ramp: fast-cloud sessions 1 → … → 300 through one instance per stage (or `--instances`). */
async function capacity(): Promise<void> {
  log(`capacity ramp: ${capacitySteps.join(' → ')} sessions, ${instances} instance(s) per stage, 3 turns each`);
  const { steps, atSlo } = await runCapacity({
    steps: capacitySteps,
    turnsPerSession: 3,
    instances,
    outDir: args.out,
    // A quarter of the turns lost: the machine is past capacity, the larger steps would only lose more.
    stopAfterLostShare: 0.25,
    log,
    onStep: (step) => {
      const overhead = step.result.turns.flatMap((t) => (t.overheadMs === undefined ? [] : [t.overheadMs]));
      const base = { name: 'overhead_ms', profile: 'fast-cloud', sessions: step.sessions, variant: 'ours' as const };
      rows.push(...distributionRows({ ...base, unit: 'ms' }, overhead, ['p50', 'p99']));
      pushOverheadParts(step.sessions, step.result.turns);
    },
  });
  rows.push(...capacityRows(steps, atSlo, instances));
  const largest = steps[steps.length - 1];
  if (largest) pushUsage(largest.sessions, largest.result.usage);
  log(`sessions_at_slo: ${atSlo} (${instances} instance(s) per stage)`);
  if (args['capacity-md']) await writeFile(args['capacity-md'], capacityMarkdown(steps, atSlo, instances));
  if (args['capacity-svg']) await writeFile(args['capacity-svg'], capacitySvg(steps));
}

const machine = {
  cpus: cpus().length,
  cpuModel: cpus()[0]?.model ?? 'unknown',
  memoryGb: round(totalmem() / 2 ** 30),
  node: process.version,
  platform: `${process.platform}-${process.arch}`,
  date: new Date().toISOString(),
  mode: quick ? 'quick' : 'full',
};
console.log('\nname                 profile              sessions variant   stat        value unit');
for (const r of rows) {
  console.log(
    `${r.name.padEnd(20)} ${r.profile.padEnd(20)} ${String(r.sessions).padStart(8)} ${(r.variant ?? '').padEnd(9)} ${r.stat.padEnd(6)} ${String(r.value).padStart(10)} ${r.unit}`,
  );
}
if (args.json) await writeFile(args.json, JSON.stringify({ machine, rows }, null, 2));
if (args.markdown) await writeFile(args.markdown, rowsMarkdown(machine, rows));
if (args.svg)
  await writeFile(args.svg, distributionSvg('voice-to-voice latency (user speech end → first agent audio)', plotted));
log(
  `\ndone in ${round((Date.now() - started) / 1000)} s${args.json ? ` · ${args.json}` : ''}${args.svg ? ` · ${args.svg}` : ''}`,
);
