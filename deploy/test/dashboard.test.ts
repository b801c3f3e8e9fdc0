/**
 * grafana/dashboards/voice-turns.json and the Grafana provisioning, checked against the telemetry names module:
 * every Prometheus metric a query reads is one of METRIC as the collector's Prometheus exporter names it, every
 * label is an attribute the stages set, every TraceQL span name and attribute is in SPAN / ATTR, and every
 * datasource uid a panel uses is provisioned.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ATTR, METRIC, METRIC_KIND, RESOURCE, SPAN, type MetricName } from '@va/telemetry';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * The OpenTelemetry Collector's Prometheus exporter naming (deploy/otel-collector.yaml: add_metric_suffixes on by
 * default, resource_to_telemetry_conversion on): every character outside [a-zA-Z0-9] becomes `_`; a histogram
 * recorded in ms gets the unit suffix `_milliseconds` and is exposed as `_bucket`, `_sum` and `_count`; a counter
 * (monotonic sum, no unit) gets `_total`; an UpDownCounter is a non-monotonic sum, exposed as a gauge under its
 * own name (no unit, so no suffix). Attribute and resource-attribute keys become labels the same way.
 */
function prometheusNames(metric: MetricName): string[] {
  const base = promLabel(metric);
  switch (METRIC_KIND[metric]) {
    case 'histogram':
      return ['bucket', 'sum', 'count'].map((s) => `${base}_milliseconds_${s}`);
    case 'counter':
      return [`${base}_total`];
    case 'gauge':
      return [base];
  }
}
function promLabel(key: string): string {
  return key.replace(/[^a-zA-Z0-9]/g, '_');
}

const EXPORTED = new Map<string, MetricName>(
  (Object.values(METRIC) as MetricName[]).flatMap((m) => prometheusNames(m).map((n) => [n, m] as const)),
);
/** Labels a query may use: histogram buckets, the resource attributes, and the attributes the stages record. */
const LABELS = new Set<string>([
  'le',
  ...Object.values(RESOURCE).map(promLabel),
  ...Object.values(ATTR).map(promLabel),
  // Attribute keys spelled in code rather than ATTR: the bus's `channel` (libs/bus), tts's `source` on va.ttfb.
  'channel',
  'source',
]);

interface Target {
  refId?: string;
  datasource?: { type?: string; uid?: string };
  expr?: string;
  legendFormat?: string;
  query?: string;
  queryType?: string;
}
interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type?: string; uid?: string };
  gridPos: { h: number; w: number; x: number; y: number };
  targets?: Target[];
  fieldConfig?: {
    overrides?: { matcher: { id: string; options: string }; properties: { id: string; value: unknown }[] }[];
  };
  panels?: Panel[];
}
interface Dashboard {
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: { name: string; type: string; query?: string }[] };
}

const dashboard = JSON.parse(readFileSync(join(ROOT, 'grafana/dashboards/voice-turns.json'), 'utf8')) as Dashboard;
const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
const targets = panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p, target: t })));
const dsOf = (p: Panel, t: Target) => t.datasource ?? p.datasource;
const promQueries = targets.filter(({ panel, target }) => dsOf(panel, target)?.type === 'prometheus');
const traceQueries = targets.filter(({ panel, target }) => dsOf(panel, target)?.type === 'tempo');

const provisioningDir = join(ROOT, 'grafana/provisioning/datasources');
const provisioned = readdirSync(provisioningDir)
  .filter((f) => /\.ya?ml$/.test(f))
  .flatMap(
    (f) =>
      (parse(readFileSync(join(provisioningDir, f), 'utf8')) as { datasources: Record<string, unknown>[] }).datasources,
  );
/** PromQL inside the provisioning (Tempo's traces-to-metrics queries); `$$` is Grafana's escaped `$`. */
const provisionedPromQL = provisioned.flatMap((d) => {
  const t2m = (d.jsonData as { tracesToMetrics?: { queries?: { query: string }[] } } | undefined)?.tracesToMetrics;
  return (t2m?.queries ?? []).map((q) => q.query.replaceAll('$$', '$'));
});

/** Splits a PromQL expression into the metric names it reads and the labels it names. */
function parsePromQL(expr: string): { metrics: string[]; labels: string[] } {
  const labels: string[] = [];
  let rest = expr.replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g, (_m, names: string) => {
    labels.push(
      ...names
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    );
    return ' ';
  });
  rest = rest.replace(/\{([^}]*)\}/g, (_m, body: string) => {
    for (const m of body.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)) labels.push(m[1]!);
    return ' ';
  });
  const metrics = [...rest.matchAll(/\bva_[a-z0-9_]+\b/g)].map((m) => m[0]);
  return { metrics, labels };
}

const allExprs = [...promQueries.map(({ target }) => target.expr ?? ''), ...provisionedPromQL];
const usedMetrics = new Set(allExprs.flatMap((e) => parsePromQL(e).metrics));

describe('the Prometheus naming rule', () => {
  it('follows the exporter for each kind of instrument', () => {
    expect(prometheusNames(METRIC.e2e)).toEqual([
      'va_e2e_milliseconds_bucket',
      'va_e2e_milliseconds_sum',
      'va_e2e_milliseconds_count',
    ]);
    expect(prometheusNames(METRIC.bargeIns)).toEqual(['va_barge_ins_total']);
    expect(prometheusNames(METRIC.preemptiveWasted)).toEqual(['va_preemptive_wasted_requests_total']);
    expect(prometheusNames(METRIC.sessionsOwned)).toEqual(['va_sessions_owned']);
    expect(promLabel(ATTR.stage)).toBe('va_stage');
    expect(promLabel(RESOURCE.serviceName)).toBe('service_name');
  });

  it('gives every metric distinct names', () => {
    const all = (Object.values(METRIC) as MetricName[]).flatMap(prometheusNames);
    expect(new Set(all).size).toBe(all.length);
  });

  it('finds metric names and labels in PromQL', () => {
    const { metrics, labels } = parsePromQL(
      'histogram_quantile(0.9, sum by (le, va_stage) (rate(va_ttft_milliseconds_bucket{service_name="x"}[5m])))',
    );
    expect(metrics).toEqual(['va_ttft_milliseconds_bucket']);
    expect(labels.sort()).toEqual(['le', 'service_name', 'va_stage']);
  });
});

describe('voice-turns.json', () => {
  it('is the "Voice turns" dashboard with Prometheus and TraceQL queries', () => {
    expect(dashboard.title).toBe('Voice turns');
    expect(dashboard.uid).toMatch(/^[a-z0-9-]{1,40}$/);
    expect(promQueries.length).toBeGreaterThan(10);
    expect(traceQueries.length).toBeGreaterThan(0);
  });

  it('reads only metrics of METRIC, under their exported names', () => {
    expect(usedMetrics.size).toBeGreaterThan(0);
    for (const name of usedMetrics) expect(EXPORTED.has(name), `${name} is not an exported METRIC name`).toBe(true);
  });

  it('shows the figures the operations issue asks for', () => {
    const used = new Set([...usedMetrics].map((n) => EXPORTED.get(n)));
    for (const m of [
      METRIC.e2e,
      METRIC.ttft,
      METRIC.ttfb,
      METRIC.eouDelay,
      METRIC.answerGap,
      METRIC.contextGet,
      METRIC.bargeIns,
      METRIC.falseInterruptions,
      METRIC.fallbacks,
      METRIC.turns,
      METRIC.budgetBreaches,
      METRIC.messagesRejected,
      METRIC.audioDropped,
      METRIC.sessionsOwned,
    ]) {
      expect(used.has(m), `${m} is on the dashboard`).toBe(true);
    }
  });

  it('has voice-to-voice p50, p90 and p99 from the e2e histogram', () => {
    const [bucket] = prometheusNames(METRIC.e2e);
    for (const q of ['0.5', '0.9', '0.99']) {
      const found = allExprs.some((e) => e.startsWith(`histogram_quantile(${q},`) && e.includes(bucket!));
      expect(found, `e2e p${q}`).toBe(true);
    }
  });

  it('aggregates histograms by le, rates counters, and names only known labels', () => {
    for (const { panel, target } of promQueries) {
      const expr = target.expr ?? '';
      const { metrics, labels } = parsePromQL(expr);
      const where = `${panel.title} ${target.refId}: ${expr}`;
      for (const label of labels) expect(LABELS.has(label), `${where}: label ${label}`).toBe(true);
      for (const name of metrics) {
        const kind = METRIC_KIND[EXPORTED.get(name)!];
        if (kind === 'histogram' && name.endsWith('_bucket')) {
          expect(expr, where).toMatch(/^histogram_quantile\(/);
          expect(labels, where).toContain('le');
        }
        // Counters and a histogram's _sum / _count only make sense as rates.
        if (kind === 'counter' || (kind === 'histogram' && !name.endsWith('_bucket'))) {
          expect(expr, where).toMatch(new RegExp(`(rate|increase)\\(${name}\\b`));
        }
      }
      // A legend may only name labels the query keeps.
      for (const m of (target.legendFormat ?? '').matchAll(/\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}/g)) {
        expect(labels, `${where}: legend {{${m[1]}}}`).toContain(m[1]);
      }
    }
  });

  it('TraceQL names only spans of SPAN and attributes of ATTR / RESOURCE', () => {
    const spans = new Set<string>(Object.values(SPAN));
    const attrs = new Set<string>(Object.values(ATTR));
    const resources = new Set<string>(Object.values(RESOURCE));
    let checked = 0;
    for (const { panel, target } of traceQueries) {
      const q = target.query ?? '';
      expect(target.queryType, panel.title).toBe('traceql');
      if (/^\s*\$[a-z_]+\s*$/.test(q)) continue; // a trace id from a variable: the trace panel.
      expect(q, panel.title).toMatch(/^\{.*\}$/);
      for (const m of q.matchAll(/(?<![.\w])name\s*(?:=|!=|=~)\s*"([^"]+)"/g)) {
        expect(spans.has(m[1]!), `${panel.title}: span ${m[1]}`).toBe(true);
        checked += 1;
      }
      for (const m of q.matchAll(/\bspan\.([a-zA-Z0-9_.]+)/g)) {
        expect(attrs.has(m[1]!), `${panel.title}: span.${m[1]}`).toBe(true);
        checked += 1;
      }
      for (const m of q.matchAll(/\bresource\.([a-zA-Z0-9_.]+)/g)) {
        expect(resources.has(m[1]!), `${panel.title}: resource.${m[1]}`).toBe(true);
        checked += 1;
      }
    }
    expect(checked).toBeGreaterThan(0);
  });

  it('lists the slowest turns from Tempo, each trace id linked to the trace view', () => {
    const slow = traceQueries.find(({ target }) => {
      const q = target.query ?? '';
      return q.includes(`name = "${SPAN.turn}"`) && q.includes(`span.${ATTR.e2eMs}`);
    });
    expect(slow, 'a TraceQL table of turn root spans filtered on va.e2e_ms').toBeDefined();
    const table = slow!.panel;
    expect(table.type).toBe('table');
    const links = (table.fieldConfig?.overrides ?? [])
      .filter((o) => o.matcher.id === 'byName' && o.matcher.options === 'traceID')
      .flatMap((o) => o.properties.filter((p) => p.id === 'links').flatMap((p) => p.value as { url: string }[]));
    const variables = dashboard.templating.list.map((v) => v.name);
    const inDashboard = links.find((l) => l.url.startsWith(`/d/${dashboard.uid}/`));
    expect(inDashboard, 'a link to this dashboard with the trace id').toBeDefined();
    const param = /[?&]var-([a-z_]+)=\$\{__value\.raw\}/.exec(inDashboard!.url);
    expect(param).not.toBeNull();
    expect(variables).toContain(param![1]);
    // … where a trace panel shows that variable's trace.
    const tracePanel = panels.find(
      (p) => p.type === 'traces' && p.targets?.some((t) => t.query?.trim() === `$${param![1]}`),
    );
    expect(tracePanel).toBeDefined();
    expect(links.some((l) => l.url.startsWith('/explore?') && l.url.includes('${__value.raw}'))).toBe(true);
    // Any other variable the TraceQL uses exists too.
    for (const { target } of traceQueries) {
      for (const m of (target.query ?? '').matchAll(/\$([a-z_]+)/g)) expect(variables).toContain(m[1]);
    }
  });

  it('uses only provisioned datasources, by uid and type', () => {
    const byUid = new Map(provisioned.map((d) => [String(d.uid), String(d.type)]));
    expect([...byUid.keys()].sort()).toEqual(['prometheus', 'tempo']);
    const refs: { uid?: string; type?: string }[] = [];
    const walk = (v: unknown, key?: string) => {
      if (Array.isArray(v)) v.forEach((x) => walk(x));
      else if (v && typeof v === 'object') {
        if (key === 'datasource') refs.push(v as { uid?: string; type?: string });
        for (const [k, x] of Object.entries(v)) walk(x, k);
      }
    };
    walk(dashboard);
    expect(refs.length).toBeGreaterThan(0);
    for (const ref of refs) {
      expect(byUid.get(ref.uid ?? ''), `datasource uid ${ref.uid}`).toBe(ref.type);
    }
    for (const p of panels.filter((p) => p.type !== 'row')) expect(p.datasource, p.title).toBeDefined();
    // Tempo's traces-to-metrics points at the provisioned Prometheus.
    const tempo = provisioned.find((d) => d.type === 'tempo')!;
    const t2m = (tempo.jsonData as { tracesToMetrics: { datasourceUid: string } }).tracesToMetrics;
    expect(byUid.get(t2m.datasourceUid)).toBe('prometheus');
  });

  it('has unique panel ids and no overlapping panels', () => {
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const cells = new Map<string, string>();
    for (const p of panels) {
      const { h, w, x, y } = p.gridPos;
      expect(x + w, p.title).toBeLessThanOrEqual(24);
      for (let r = y; r < y + h; r++) {
        for (let c = x; c < x + w; c++) {
          const other = cells.get(`${r}:${c}`);
          expect(other, `${p.title} overlaps ${other}`).toBeUndefined();
          cells.set(`${r}:${c}`, p.title);
        }
      }
    }
  });
});
