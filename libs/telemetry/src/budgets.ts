import type { Attributes, Span } from '@opentelemetry/api';
import { z } from 'zod';
import { counter, histogram } from './instruments.js';
import { ATTR, EVENT, METRIC, METRIC_KIND, type MetricName } from './names.js';

/** The latency histograms (ms) a budget can be set for. */
export type LatencyMetric = { [N in MetricName]: (typeof METRIC_KIND)[N] extends 'histogram' ? N : never }[MetricName];

/** Every latency metric, in METRIC's order (for messages and validation). */
export const LATENCY_METRICS = (Object.keys(METRIC_KIND) as MetricName[]).filter(
  (m): m is LatencyMetric => METRIC_KIND[m] === 'histogram',
);

/**
 * A budget key: a latency metric (every stage that records it), or `<metric>@<stage>` for one stage only
 * (the stage is the `va.stage` attribute the latency is recorded with). A stage's own budget wins.
 */
export type BudgetKey = LatencyMetric | `${LatencyMetric}@${string}`;
export type Budgets = Partial<Record<BudgetKey, number>>;

/**
 * Per-stage latency budgets (ms). A latency over its budget adds a `budget_exceeded` event to the span that
 * measured it and counts in `va.budget.breaches`. Override with VA_BUDGETS (see parseBudgets).
 */
export const DEFAULT_BUDGETS = {
  // Voice-to-voice (user stops → first agent audio): past ~800 ms a reply feels late in conversation.
  [METRIC.e2e]: 800,
  // Time to first token. The fast responder's opener is what the user hears first: it must start quickly.
  [METRIC.ttft]: 400,
  // The deep responder's answer is covered by the opener (~1–2 s of speech), so it may take longer.
  [`${METRIC.ttft}@deep-responder` as const]: 1500,
  // TTS first audio after its first text: most of the opener's share of the e2e budget is the LLM's.
  [METRIC.ttfb]: 250,
  // Turn detection's wait after the user stopped: the endpointing delay plus the STT final.
  [METRIC.eouDelay]: 600,
  // Silence between the opener's end and the answer's start: longer than a short breath is audible.
  [METRIC.answerGap]: 150,
  // ctx.get is an in-memory read (KV on a cache miss), on every turn's critical path.
  [METRIC.contextGet]: 20,
} as const satisfies Budgets;

const STAGE_NAME = /^[a-z0-9][a-z0-9_-]*$/;

/** One `key=ms` entry of VA_BUDGETS; `off` removes a (default) budget. */
const BudgetEntry = z.string().transform((raw, ctx) => {
  const eq = raw.indexOf('=');
  if (eq < 0) {
    ctx.addIssue({ code: 'custom', message: `"${raw}": expected <metric>[@<stage>]=<ms>` });
    return z.NEVER;
  }
  const key = raw.slice(0, eq).trim();
  const value = raw.slice(eq + 1).trim();
  const at = key.indexOf('@');
  const metric = at < 0 ? key : key.slice(0, at);
  const stage = at < 0 ? undefined : key.slice(at + 1);
  if (!(LATENCY_METRICS as string[]).includes(metric)) {
    ctx.addIssue({
      code: 'custom',
      message: `"${raw}": unknown latency metric "${metric}" (one of ${LATENCY_METRICS.join(', ')})`,
    });
    return z.NEVER;
  }
  if (stage !== undefined && !STAGE_NAME.test(stage)) {
    ctx.addIssue({
      code: 'custom',
      message: `"${raw}": bad stage name "${stage}" (e.g. ${METRIC.ttft}@fast-responder)`,
    });
    return z.NEVER;
  }
  const ms = value === 'off' ? null : value === '' ? NaN : Number(value);
  if (ms !== null && !(Number.isFinite(ms) && ms > 0)) {
    ctx.addIssue({ code: 'custom', message: `"${raw}": the budget must be a positive number of ms, or off` });
    return z.NEVER;
  }
  return { key: key as BudgetKey, ms };
});

const BudgetsSpec = z
  .string()
  .transform((s) =>
    s
      .split(',')
      .map((e) => e.trim())
      .filter((e) => e !== ''),
  )
  .pipe(z.array(BudgetEntry));

export class BudgetsError extends Error {
  override name = 'BudgetsError';
}

/**
 * Parses VA_BUDGETS: comma-separated `<metric>=<ms>` or `<metric>@<stage>=<ms>` (`off` drops a budget), e.g.
 * `va.e2e=700,va.ttfb=200,va.ttft@deep-responder=off`. Returns the overrides (null = off); throws BudgetsError
 * naming every bad entry.
 */
export function parseBudgets(spec: string): Partial<Record<BudgetKey, number | null>> {
  const result = BudgetsSpec.safeParse(spec);
  if (!result.success) {
    throw new BudgetsError(`VA_BUDGETS: ${result.error.issues.map((i) => i.message).join('; ')}`);
  }
  return Object.fromEntries(result.data.map((e) => [e.key, e.ms]));
}

let active: Budgets | undefined;

/** The defaults with VA_BUDGETS applied; becomes the budgets recordLatency uses. Throws BudgetsError. */
export function loadBudgets(env: NodeJS.ProcessEnv = process.env): Budgets {
  const merged: Record<string, number | null> = { ...DEFAULT_BUDGETS, ...parseBudgets(env.VA_BUDGETS ?? '') };
  active = Object.fromEntries(Object.entries(merged).filter(([, ms]) => ms !== null)) as Budgets;
  return active;
}

/** The budget (ms) of `metric` for `stage`: the stage's own, else the metric's; undefined when none. */
export function budgetFor(
  metric: LatencyMetric,
  stage?: string,
  budgets: Budgets = active ?? loadBudgets(),
): number | undefined {
  return (stage !== undefined ? budgets[`${metric}@${stage}`] : undefined) ?? budgets[metric];
}

export interface RecordLatencyOptions {
  /** The span that measured the latency: it gets the budget_exceeded event. */
  span?: Span;
  /** The histogram's attributes (with `va.stage`, which also picks a per-stage budget). */
  attributes?: Attributes;
}

/**
 * Records a latency (ms) in its histogram and checks it against its budget: over budget, the span gets a
 * `budget_exceeded` event (va.budget.metric, va.budget.ms, va.budget.value_ms) and `va.budget.breaches` counts
 * it (va.stage, va.budget.metric). Returns whether the budget was exceeded.
 */
export function recordLatency(metric: LatencyMetric, ms: number, opts: RecordLatencyOptions = {}): boolean {
  const attributes = opts.attributes ?? {};
  histogram(metric).record(ms, attributes);
  const stage = attributes[ATTR.stage];
  const budget = budgetFor(metric, typeof stage === 'string' ? stage : undefined);
  if (budget === undefined || !(ms > budget)) return false;
  opts.span?.addEvent(EVENT.budgetExceeded, {
    [ATTR.budgetMetric]: metric,
    [ATTR.budgetMs]: budget,
    [ATTR.budgetValueMs]: Math.round(ms * 10) / 10,
  });
  counter(METRIC.budgetBreaches).add(1, {
    ...(stage !== undefined ? { [ATTR.stage]: stage } : {}),
    [ATTR.budgetMetric]: metric,
  });
  return true;
}
