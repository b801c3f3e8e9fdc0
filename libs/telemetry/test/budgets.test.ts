import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { metrics, trace } from '@opentelemetry/api';
import { AggregationTemporality, MeterProvider, MetricReader, type MetricData } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  ATTR,
  budgetFor,
  BudgetsError,
  DEFAULT_BUDGETS,
  EVENT,
  loadBudgets,
  METRIC,
  parseBudgets,
  recordLatency,
  tracer,
} from '@va/telemetry';

/** A reader the test collects from on demand. */
class TestReader extends MetricReader {
  constructor() {
    super({ aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE });
  }
  protected override async onShutdown(): Promise<void> {}
  protected override async onForceFlush(): Promise<void> {}
}

const spans = new InMemorySpanExporter();
const reader = new TestReader();

// Registered before the first instrument is made: instruments.ts creates them lazily from the global meter.
beforeAll(() => {
  trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] }));
  metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }));
});

afterEach(() => {
  delete process.env.VA_BUDGETS;
  loadBudgets();
  spans.reset();
});

async function metric(name: string): Promise<MetricData | undefined> {
  const { resourceMetrics } = await reader.collect();
  return resourceMetrics.scopeMetrics.flatMap((s) => s.metrics).find((m) => m.descriptor.name === name);
}

/** The breach counter's value for these attributes (0 when never incremented). */
async function breaches(attrs: Record<string, string>): Promise<number> {
  const m = await metric(METRIC.budgetBreaches);
  const point = m?.dataPoints.find((p) => Object.entries(attrs).every(([k, v]) => p.attributes[k] === v));
  return (point?.value as number | undefined) ?? 0;
}

function finished(name: string) {
  const span = spans.getFinishedSpans().find((s) => s.name === name);
  if (!span) throw new Error(`span ${name} not exported`);
  return span;
}

describe('latency budgets', () => {
  it('over budget: records the histogram, adds budget_exceeded on the span and counts the breach', async () => {
    loadBudgets();
    const span = tracer().startSpan('over');
    const breached = recordLatency(METRIC.e2e, 912.34, { span, attributes: { [ATTR.stage]: 'media-gateway' } });
    span.end();
    expect(breached).toBe(true);

    expect(finished('over').events.map((e) => ({ name: e.name, attributes: e.attributes }))).toEqual([
      {
        name: EVENT.budgetExceeded,
        attributes: { [ATTR.budgetMetric]: METRIC.e2e, [ATTR.budgetMs]: 800, [ATTR.budgetValueMs]: 912.3 },
      },
    ]);
    expect(await breaches({ [ATTR.stage]: 'media-gateway', [ATTR.budgetMetric]: METRIC.e2e })).toBe(1);
    const hist = await metric(METRIC.e2e);
    expect(hist?.dataPoints).toHaveLength(1);
    expect((hist!.dataPoints[0]!.value as { count: number; sum: number }).count).toBe(1);
  });

  it('under (or at) budget: only the histogram, no event, no breach', async () => {
    loadBudgets();
    const span = tracer().startSpan('under');
    expect(recordLatency(METRIC.ttfb, 120, { span, attributes: { [ATTR.stage]: 'tts', source: 'fast' } })).toBe(false);
    expect(recordLatency(METRIC.ttfb, 250, { span, attributes: { [ATTR.stage]: 'tts', source: 'fast' } })).toBe(false);
    span.end();
    expect(finished('under').events).toEqual([]);
    expect(await breaches({ [ATTR.budgetMetric]: METRIC.ttfb })).toBe(0);
    const hist = await metric(METRIC.ttfb);
    expect((hist!.dataPoints[0]!.value as { count: number }).count).toBe(2);
  });

  it('a stage budget wins over the metric budget (the deep responder may take longer to its first token)', async () => {
    loadBudgets();
    expect(budgetFor(METRIC.ttft, 'fast-responder')).toBe(400);
    expect(budgetFor(METRIC.ttft, 'deep-responder')).toBe(1500);
    const fast = tracer().startSpan('fast');
    const deep = tracer().startSpan('deep');
    expect(recordLatency(METRIC.ttft, 700, { span: fast, attributes: { [ATTR.stage]: 'fast-responder' } })).toBe(true);
    expect(recordLatency(METRIC.ttft, 700, { span: deep, attributes: { [ATTR.stage]: 'deep-responder' } })).toBe(false);
    fast.end();
    deep.end();
    expect(finished('fast').events.map((e) => e.name)).toEqual([EVENT.budgetExceeded]);
    expect(finished('deep').events).toEqual([]);
    expect(await breaches({ [ATTR.stage]: 'fast-responder', [ATTR.budgetMetric]: METRIC.ttft })).toBe(1);
    expect(await breaches({ [ATTR.stage]: 'deep-responder', [ATTR.budgetMetric]: METRIC.ttft })).toBe(0);
  });

  it('VA_BUDGETS overrides, adds per-stage budgets and turns budgets off', async () => {
    process.env.VA_BUDGETS = ' va.e2e=700, va.ttfb=200.5,va.context.get@session-context=5,va.answer_gap=off,';
    const budgets = loadBudgets();
    expect(budgets).toEqual({
      ...DEFAULT_BUDGETS,
      'va.e2e': 700,
      'va.ttfb': 200.5,
      'va.context.get@session-context': 5,
      'va.answer_gap': undefined,
    });
    expect('va.answer_gap' in budgets).toBe(false);
    expect(budgetFor(METRIC.contextGet, 'session-context')).toBe(5);
    expect(budgetFor(METRIC.contextGet, 'other')).toBe(20);
    // No budget, never a breach.
    expect(recordLatency(METRIC.answerGap, 10_000, { attributes: { [ATTR.stage]: 'media-gateway' } })).toBe(false);
    expect(recordLatency(METRIC.e2e, 750, { attributes: { [ATTR.stage]: 'media-gateway' } })).toBe(true);
    // A latency with no default budget (tool calls) gets one from VA_BUDGETS.
    expect(budgetFor(METRIC.toolDuration, 'deep-responder')).toBeUndefined();
    expect(parseBudgets('va.tool.duration=2000')).toEqual({ 'va.tool.duration': 2000 });
    expect(parseBudgets('')).toEqual({});
  });

  it('rejects a bad VA_BUDGETS with a message naming each bad entry', () => {
    const error = (spec: string) => {
      try {
        parseBudgets(spec);
      } catch (err) {
        expect(err).toBeInstanceOf(BudgetsError);
        return (err as Error).message;
      }
      throw new Error(`"${spec}" was accepted`);
    };
    expect(error('va.e2ee=700')).toMatch(
      /^VA_BUDGETS: "va\.e2ee=700": unknown latency metric "va\.e2ee" \(one of va\.ttft, /,
    );
    expect(error('va.e2e')).toBe('VA_BUDGETS: "va.e2e": expected <metric>[@<stage>]=<ms>');
    expect(error('va.e2e=fast')).toBe('VA_BUDGETS: "va.e2e=fast": the budget must be a positive number of ms, or off');
    expect(error('va.e2e=-5')).toMatch(/positive number/);
    expect(error('va.e2e=0')).toMatch(/positive number/);
    expect(error('va.e2e=')).toMatch(/positive number/);
    expect(error('va.ttft@Fast Responder=300')).toMatch(/bad stage name "Fast Responder"/);
    // Counters are not latencies.
    expect(error('va.turns=5')).toMatch(/unknown latency metric "va\.turns"/);
    // Every bad entry is reported, not just the first.
    expect(error('va.e2e=x,va.ttfb=1,nope=2')).toMatch(/"va\.e2e=x".*; "nope=2"/);
    process.env.VA_BUDGETS = 'va.e2e=soon';
    expect(() => loadBudgets()).toThrow(BudgetsError);
  });

  it('a service with a bad VA_BUDGETS stops at start-up with a clear error (exit 2)', async () => {
    const run = promisify(execFile);
    const script =
      "import('@va/telemetry').then((t) => { t.startTelemetry({ serviceName: 'x' }); console.log('started'); })";
    const bad = await run(process.execPath, ['-e', script], {
      env: { ...process.env, VA_BUDGETS: 'va.e2e=700,va.ttfb=later' },
    }).then(
      () => undefined,
      (err: { code: number; stdout: string; stderr: string }) => err,
    );
    expect(bad?.code).toBe(2);
    expect(bad?.stdout).toBe('');
    expect(bad?.stderr).toContain(
      'invalid configuration:\n  VA_BUDGETS: "va.ttfb=later": the budget must be a positive number of ms, or off',
    );
    const good = await run(process.execPath, ['-e', script], { env: { ...process.env, VA_BUDGETS: 'va.e2e=700' } });
    expect(good.stdout).toBe('started\n');
  });
});
