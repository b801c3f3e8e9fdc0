import type { Row } from './stats.js';

/** The rows as a Markdown table (for BENCHMARKS.md), grouped as they were measured. */
export function rowsMarkdown(machine: Record<string, string | number>, rows: readonly Row[]): string {
  const head = `Machine: ${Object.entries(machine)
    .map(([k, v]) => `${k} ${v}`)
    .join(' · ')}\n\n| name | profile | sessions | variant | stat | value | unit |\n|---|---|---:|---|---|---:|---|`;
  const body = rows.map(
    (r) => `| ${r.name} | ${r.profile} | ${r.sessions} | ${r.variant ?? ''} | ${r.stat} | ${r.value} | ${r.unit} |`,
  );
  return [head, ...body].join('\n') + '\n';
}
