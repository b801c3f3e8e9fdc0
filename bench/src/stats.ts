/** Nearest-rank percentile (p in 0..100) of unsorted values; NaN for none. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

export interface Row {
  name: string;
  profile: string;
  sessions: number;
  stat: string;
  value: number;
  unit: string;
  variant?: 'ours' | 'baseline' | 'livekit';
  /** Instances of each stage, where a row depends on it (capacity). */
  instances?: number;
}

/** p50/p90/p99 and the count of a sample, as rows. */
export function distributionRows(
  base: Omit<Row, 'stat' | 'value'>,
  values: readonly number[],
  stats = ['p50', 'p90', 'p99'],
): Row[] {
  const rows = stats.map((stat) => ({ ...base, stat, value: round(percentile(values, Number(stat.slice(1)))) }));
  return [...rows, { ...base, stat: 'count', value: values.length, unit: 'n' }];
}

export function round(v: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}
