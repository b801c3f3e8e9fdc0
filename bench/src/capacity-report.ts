import { SLO_MARGIN_MS, type CapacityStep } from './capacity.js';

/** The capacity table for BENCHMARKS.md: one row per step, then CPU per session-second per stage. */
export function capacityMarkdown(steps: readonly CapacityStep[], atSlo: number, instances: number): string {
  const first = steps[0];
  const lines = [
    `One instance per stage${instances > 1 ? ` × ${instances}` : ''}, fast-cloud fakes, 3 turns per session. ` +
      `SLO: no turn lost and e2e p99 ≤ ${first ? first.e2eP50 + SLO_MARGIN_MS : '–'} ms ` +
      `(the 1-session p50 + ${SLO_MARGIN_MS} ms). **sessions_at_slo: ${atSlo}**`,
    '',
    '| sessions | refused | turns answered / asked | lost | e2e p50 / p99 | overhead p50 / p99 | CPU ms per session-second |',
    '|---:|---:|---:|---:|---:|---:|---:|',
    ...steps.map(
      (s) =>
        `| ${s.sessions} | ${s.refused}${s.refused > 0 ? ` (${Object.keys(s.refusedBy).join(', ')})` : ''} | ` +
        `${s.answered} / ${s.asked} | ${s.lost} | ${s.e2eP50} / ${s.e2eP99} ms | ` +
        `${s.overheadP50} / ${s.overheadP99} ms | ${s.cpuMsPerSessionSecond} |`,
    ),
    '',
  ];
  const stages = [...new Set(steps.flatMap((s) => s.stages.map((st) => st.stage)))];
  lines.push(
    `| stage | ${steps.map((s) => `${s.sessions}`).join(' | ')} | (CPU ms per session-second · loop delay p99 ms · frames dropped) |`,
    `|---|${steps.map(() => '---:').join('|')}|---|`,
  );
  for (const stage of stages) {
    const cells = steps.map((s) => {
      const st = s.stages.find((x) => x.stage === stage);
      return st ? `${st.cpuMsPerSessionSecond} · ${st.eventLoopDelayP99Ms ?? '–'} · ${st.framesDropped}` : '–';
    });
    lines.push(`| ${stage} | ${cells.join(' | ')} | |`);
  }
  return lines.join('\n') + '\n';
}
