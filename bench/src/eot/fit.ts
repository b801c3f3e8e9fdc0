import type { Logistic } from '@va/providers';

/** One labelled example: features, and 1 when the speaker had finished (0: a pause inside the utterance). */
export interface Example {
  x: number[];
  y: 0 | 1;
}

/** Solves A·x = b (A symmetric positive definite, small) by Gaussian elimination with partial pivoting. */
function solve(a: number[][], b: number[]): number[] {
  const n = b.length;
  const m = a.map((row, i) => [...row, b[i]!]);
  for (let col = 0; col < n; col++) {
    let pivot = col;
    for (let r = col + 1; r < n; r++) if (Math.abs(m[r]![col]!) > Math.abs(m[pivot]![col]!)) pivot = r;
    [m[col], m[pivot]] = [m[pivot]!, m[col]!];
    for (let r = col + 1; r < n; r++) {
      const f = m[r]![col]! / m[col]![col]!;
      for (let c = col; c <= n; c++) m[r]![c]! -= f * m[col]![c]!;
    }
  }
  const x = new Array<number>(n).fill(0);
  for (let r = n - 1; r >= 0; r--) {
    let s = m[r]![n]!;
    for (let c = r + 1; c < n; c++) s -= m[r]![c]! * x[c]!;
    x[r] = s / m[r]![r]!;
  }
  return x;
}

/**
 * L2-regularised logistic regression by Newton's method (IRLS) on standardised features: deterministic, so the
 * same examples always give the same weights. `l2` shrinks weights (not the bias) towards 0.
 */
export function fitLogistic(examples: readonly Example[], l2 = 1, iterations = 25): Logistic {
  const d = examples[0]?.x.length ?? 0;
  const mean = Array.from({ length: d }, (_, j) => examples.reduce((s, e) => s + e.x[j]!, 0) / examples.length);
  const std = Array.from({ length: d }, (_, j) => {
    const v = examples.reduce((s, e) => s + (e.x[j]! - mean[j]!) ** 2, 0) / examples.length;
    return Math.sqrt(v) || 1;
  });
  const rows = examples.map((e) => [1, ...e.x.map((v, j) => (v - mean[j]!) / std[j]!)]);
  let w = new Array<number>(d + 1).fill(0);
  for (let it = 0; it < iterations; it++) {
    const grad = new Array<number>(d + 1).fill(0);
    const hess = Array.from({ length: d + 1 }, () => new Array<number>(d + 1).fill(0));
    rows.forEach((x, i) => {
      const p = 1 / (1 + Math.exp(-x.reduce((s, v, j) => s + v * w[j]!, 0)));
      const r = p - examples[i]!.y;
      const q = Math.max(p * (1 - p), 1e-9);
      for (let j = 0; j <= d; j++) {
        grad[j]! += r * x[j]!;
        for (let k = 0; k <= d; k++) hess[j]![k]! += q * x[j]! * x[k]!;
      }
    });
    for (let j = 1; j <= d; j++) {
      grad[j]! += l2 * w[j]!;
      hess[j]![j]! += l2;
    }
    const step = solve(hess, grad);
    w = w.map((v, j) => v - step[j]!);
    if (Math.max(...step.map(Math.abs)) < 1e-8) break;
  }
  const round = (v: number) => Math.round(v * 1e6) / 1e6;
  return { bias: round(w[0]!), weights: w.slice(1).map(round), mean: mean.map(round), std: std.map(round) };
}

/** Area under the ROC curve: the chance a finished example scores above an unfinished one. */
export function auc(scored: readonly { p: number; y: 0 | 1 }[]): number {
  const pos = scored.filter((s) => s.y === 1).map((s) => s.p);
  const neg = scored.filter((s) => s.y === 0).map((s) => s.p);
  if (pos.length === 0 || neg.length === 0) return NaN;
  let wins = 0;
  for (const p of pos) for (const n of neg) wins += p > n ? 1 : p === n ? 0.5 : 0;
  return wins / (pos.length * neg.length);
}
