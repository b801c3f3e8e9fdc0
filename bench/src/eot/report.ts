import type { EotResult, EotRow } from './eot.js';
import type { PolicyPoint } from './sweep.js';

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');

function cell(rows: readonly EotRow[], match: Partial<EotRow>, unit: string): string {
  const row = rows.find((r) => Object.entries(match).every(([k, v]) => r[k as keyof EotRow] === v));
  if (!row) return '';
  return row.value === null ? '–' : `${row.value}${unit}`;
}

/** eot-bench's table, one per recogniser: false cut-offs at the latency budgets, latency at the cut-off budgets. */
export function eotMarkdown(result: EotResult): string {
  const out: string[] = [];
  for (const recogniser of Object.keys(result.curves)) {
    const rows = result.rows.filter((r) => r.recogniser === recogniser);
    out.push(
      `**${recogniser === 'exact' ? 'Exact words (timed fake recogniser)' : 'pocketsphinx'}**`,
      '',
      '| Detector | False cut-offs @ 300 ms | @ 600 ms | Latency @ 5 % cut-offs | @ 10 % | Previews per turn | Previews cancelled |',
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    );
    for (const detector of Object.keys(result.curves[recogniser]!)) {
      const d = { detector };
      out.push(
        `| ${detector} | ${cell(rows, { ...d, name: 'eot_false_cutoff_pct', budget_ms: 300 }, ' %')} | ` +
          `${cell(rows, { ...d, name: 'eot_false_cutoff_pct', budget_ms: 600 }, ' %')} | ` +
          `${cell(rows, { ...d, name: 'eot_latency_ms', cutoff_pct: 5 }, ' ms')} | ` +
          `${cell(rows, { ...d, name: 'eot_latency_ms', cutoff_pct: 10 }, ' ms')} | ` +
          `${cell(rows, { ...d, name: 'eot_previews_per_turn' }, '')} | ` +
          `${cell(rows, { ...d, name: 'eot_preview_cancelled_pct' }, ' %')} |`,
      );
    }
    const live = { detector: 'live turn-detector' };
    out.push(
      `| live turn-detector (its default policy) | ${cell(rows, { ...live, name: 'eot_live_false_cutoff_pct' }, ' %')} | | ` +
        `mean ${cell(rows, { ...live, name: 'eot_live_latency_ms', stat: 'mean' }, ' ms')}, ` +
        `p50 ${cell(rows, { ...live, name: 'eot_live_latency_ms', stat: 'p50' }, ' ms')} | ` +
        `${cell(rows, { ...live, name: 'eot_live_missed_turns' }, '')} missed | ` +
        `${cell(rows, { ...live, name: 'eot_previews_per_turn' }, '')} | ` +
        `${cell(rows, { ...live, name: 'eot_preview_cancelled_pct' }, ' %')} |`,
      '',
    );
  }
  out.push(
    `${result.takes} takes (${result.takes / Math.max(1, result.voices.length)} eval utterances × ${result.voices.length} voices: ` +
      `${result.voices.join(', ')}), ${result.holds} mid-utterance pauses; ${result.skipped} utterances dropped ` +
      `(a voice could not place a pause). A "–": no policy reached that budget.`,
  );
  return out.join('\n');
}

const COLORS = ['#888888', '#e0a020', '#4a7bd0', '#d03a3a', '#2a9d5a'];

/** The trade-off curves: false cut-offs against mean latency, a panel per recogniser, a line per detector. */
export function eotSvg(result: EotResult): string {
  const panels = Object.entries(result.curves);
  const w = 420;
  const h = 340;
  const m = { l: 50, r: 15, t: 40, b: 45 };
  const maxMs = 2000;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w * panels.length}" height="${h + 30}" font-family="sans-serif" font-size="11">`,
    '<rect width="100%" height="100%" fill="white"/>',
  ];
  panels.forEach(([recogniser, curves], i) => {
    const ox = i * w;
    const x = (ms: number) => ox + m.l + (Math.min(ms, maxMs) / maxMs) * (w - m.l - m.r);
    const y = (pct: number) => m.t + (1 - pct / 100) * (h - m.t - m.b);
    parts.push(
      `<text x="${ox + w / 2}" y="20" text-anchor="middle" font-size="13">${esc(recogniser === 'exact' ? 'exact words' : recogniser)}</text>`,
    );
    for (let ms = 0; ms <= maxMs; ms += 250) {
      parts.push(`<line x1="${x(ms)}" y1="${y(100)}" x2="${x(ms)}" y2="${y(0)}" stroke="#eee"/>`);
      if (ms % 500 === 0)
        parts.push(`<text x="${x(ms)}" y="${y(0) + 14}" text-anchor="middle" fill="#666">${ms}</text>`);
    }
    for (let pct = 0; pct <= 100; pct += 20) {
      parts.push(`<line x1="${x(0)}" y1="${y(pct)}" x2="${x(maxMs)}" y2="${y(pct)}" stroke="#eee"/>`);
      parts.push(`<text x="${x(0) - 5}" y="${y(pct) + 4}" text-anchor="end" fill="#666">${pct}</text>`);
    }
    for (const ms of [300, 600])
      parts.push(
        `<line x1="${x(ms)}" y1="${y(100)}" x2="${x(ms)}" y2="${y(0)}" stroke="#bbb" stroke-dasharray="4 3"/>`,
      );
    parts.push(
      `<text x="${x(maxMs / 2)}" y="${y(0) + 30}" text-anchor="middle" fill="#666">mean latency after the real end (ms)</text>`,
      `<text x="${ox + 12}" y="${y(50)}" transform="rotate(-90 ${ox + 12} ${y(50)})" text-anchor="middle" fill="#666">false cut-offs (%)</text>`,
    );
    Object.entries(curves).forEach(([detector, points], k) => {
      const color = COLORS[k % COLORS.length]!;
      parts.push(`<path d="${stairs(points, x, y)}" fill="none" stroke="${color}" stroke-width="2"/>`);
      parts.push(
        `<text x="${x(maxMs) - 5}" y="${m.t + 14 * (k + 1)}" text-anchor="end" fill="${color}">${esc(detector)}</text>`,
      );
    });
  });
  parts.push('</svg>');
  return parts.join('\n');
}

/** A frontier as a staircase: each policy holds its cut-off rate until a slower one lowers it. */
function stairs(points: readonly PolicyPoint[], x: (ms: number) => number, y: (pct: number) => number): string {
  if (points.length === 0) return '';
  const d = [`M${x(points[0]!.latencyMs).toFixed(1)},${y(points[0]!.cutoffPct).toFixed(1)}`];
  for (let i = 1; i < points.length; i++) {
    d.push(`H${x(points[i]!.latencyMs).toFixed(1)}`, `V${y(points[i]!.cutoffPct).toFixed(1)}`);
  }
  d.push(`H${x(2000).toFixed(1)}`);
  return d.join(' ');
}
