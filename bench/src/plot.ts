import { percentile } from './stats.js';

export interface Series {
  label: string;
  values: readonly number[];
}

/**
 * An SVG of latency distributions: one row per series, every turn a dot, p50 and p90 marked — enough to see
 * "ours vs baseline" at a glance without a plotting library.
 */
export function distributionSvg(title: string, series: readonly Series[], unit = 'ms'): string {
  const width = 760;
  const rowH = 34;
  const left = 190;
  const right = 30;
  const top = 40;
  const height = top + series.length * rowH + 40;
  const max = Math.max(1, ...series.flatMap((s) => s.values)) * 1.05;
  const x = (v: number) => left + (v / max) * (width - left - right);
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${width / 2}" y="20" text-anchor="middle" font-size="14">${esc(title)}</text>`,
  ];
  const step = niceStep(max);
  for (let v = 0; v <= max; v += step) {
    parts.push(`<line x1="${x(v)}" y1="${top - 6}" x2="${x(v)}" y2="${height - 34}" stroke="#eee"/>`);
    parts.push(`<text x="${x(v)}" y="${height - 20}" text-anchor="middle" fill="#666">${v}</text>`);
  }
  parts.push(`<text x="${width - right}" y="${height - 6}" text-anchor="end" fill="#666">${unit}</text>`);
  series.forEach((s, i) => {
    const y = top + i * rowH + rowH / 2;
    parts.push(`<text x="${left - 10}" y="${y + 4}" text-anchor="end">${esc(s.label)}</text>`);
    s.values.forEach((v, k) => {
      const jitter = ((k * 7919) % 13) - 6;
      parts.push(`<circle cx="${x(v).toFixed(1)}" cy="${y + jitter}" r="2.2" fill="#4a7bd0" fill-opacity="0.45"/>`);
    });
    for (const [p, color] of [
      [50, '#d03a3a'],
      [90, '#e0a020'],
    ] as const) {
      const v = percentile(s.values, p);
      if (!Number.isFinite(v)) continue;
      parts.push(
        `<line x1="${x(v)}" y1="${y - 11}" x2="${x(v)}" y2="${y + 11}" stroke="${color}" stroke-width="2.5"/>`,
      );
    }
  });
  parts.push(`<text x="${left}" y="${height - 6}" fill="#666">dots: turns · red: p50 · amber: p90</text>`);
  parts.push('</svg>');
  return parts.join('\n');
}

function niceStep(max: number): number {
  const raw = max / 8;
  const mag = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
}

/**
 * The capacity ramp as two line charts side by side: e2e p50/p99 (ms) and pipeline CPU (ms per session-second)
 * against concurrent sessions.
 */
export function capacitySvg(
  steps: readonly { sessions: number; e2eP50: number; e2eP99: number; cpuMsPerSessionSecond: number }[],
): string {
  const panelW = 380;
  const h = 300;
  const pad = { left: 56, right: 16, top: 36, bottom: 44 };
  const xs = steps.map((s) => s.sessions);
  const xMax = Math.max(1, ...xs);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${panelW * 2}" height="${h}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
  ];
  const panel = (
    offset: number,
    title: string,
    unit: string,
    series: { label: string; color: string; values: number[] }[],
  ) => {
    const finite = series.flatMap((s) => s.values.filter(Number.isFinite));
    const yMax = Math.max(1, ...finite) * 1.1;
    const x = (v: number) => offset + pad.left + (v / xMax) * (panelW - pad.left - pad.right);
    const y = (v: number) => pad.top + (1 - v / yMax) * (h - pad.top - pad.bottom);
    parts.push(`<text x="${offset + panelW / 2}" y="20" text-anchor="middle" font-size="14">${title}</text>`);
    const step = niceStep(yMax);
    for (let v = 0; v <= yMax; v += step) {
      parts.push(`<line x1="${x(0)}" y1="${y(v)}" x2="${x(xMax)}" y2="${y(v)}" stroke="#eee"/>`);
      parts.push(`<text x="${x(0) - 6}" y="${y(v) + 4}" text-anchor="end" fill="#666">${v}</text>`);
    }
    for (const sx of xs) {
      parts.push(`<text x="${x(sx)}" y="${h - pad.bottom + 16}" text-anchor="middle" fill="#666">${sx}</text>`);
    }
    parts.push(
      `<text x="${offset + panelW / 2}" y="${h - 8}" text-anchor="middle" fill="#666">concurrent sessions · ${unit}</text>`,
    );
    series.forEach((s, i) => {
      const pts = steps
        .map((st, k) => [st.sessions, s.values[k]!] as const)
        .filter(([, v]) => Number.isFinite(v))
        .map(([sx, v]) => `${x(sx).toFixed(1)},${y(v).toFixed(1)}`);
      parts.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="${s.color}" stroke-width="2"/>`);
      for (const p of pts) {
        const [cx, cy] = p.split(',');
        parts.push(`<circle cx="${cx}" cy="${cy}" r="3" fill="${s.color}"/>`);
      }
      parts.push(`<text x="${x(0) + 8}" y="${pad.top + 14 + i * 14}" fill="${s.color}">${s.label}</text>`);
    });
  };
  panel(0, 'voice-to-voice latency', 'ms', [
    { label: 'e2e p50', color: '#4a7bd0', values: steps.map((s) => s.e2eP50) },
    { label: 'e2e p99', color: '#d03a3a', values: steps.map((s) => s.e2eP99) },
  ]);
  panel(panelW, 'pipeline CPU', 'ms per session-second', [
    { label: 'all stages', color: '#2a9d5c', values: steps.map((s) => s.cpuMsPerSessionSecond) },
  ]);
  parts.push('</svg>');
  return parts.join('\n');
}
