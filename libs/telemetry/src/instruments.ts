import type { Attributes, Counter, Histogram, UpDownCounter } from '@opentelemetry/api';
import type { METRIC_KIND, MetricName } from './names.js';
import { meter } from './setup.js';

/** Metric names of one instrument kind: a counter can't be recorded as a histogram by mistake. */
type NamesOf<K extends string> = { [N in MetricName]: (typeof METRIC_KIND)[N] extends K ? N : never }[MetricName];

// Instruments are created lazily so the meter provider registered by startTelemetry() is the one used.
const counters = new Map<MetricName, Counter>();
const upDowns = new Map<MetricName, UpDownCounter>();
const histograms = new Map<MetricName, Histogram>();

export function counter(name: NamesOf<'counter'>): Counter {
  let c = counters.get(name);
  if (!c) counters.set(name, (c = meter().createCounter(name)));
  return c;
}

export function upDownCounter(name: NamesOf<'gauge'>): UpDownCounter {
  let c = upDowns.get(name);
  if (!c) upDowns.set(name, (c = meter().createUpDownCounter(name)));
  return c;
}

/** Latency histograms, in milliseconds. */
export function histogram(name: NamesOf<'histogram'>): Histogram {
  let h = histograms.get(name);
  if (!h) histograms.set(name, (h = meter().createHistogram(name, { unit: 'ms' })));
  return h;
}

/** A gauge read when metrics are exported (e.g. a load figure kept up to date elsewhere). */
export function observableGauge(name: NamesOf<'gauge'>, read: () => number, attributes: Attributes = {}): void {
  meter()
    .createObservableGauge(name)
    .addCallback((result) => result.observe(read(), attributes));
}

/**
 * A counter whose totals are kept elsewhere (e.g. a plain map incremented per message) and read when metrics are
 * exported: no OTel call on the hot path.
 */
export function observableCounter(
  name: NamesOf<'counter'>,
  read: () => readonly { value: number; attributes: Attributes }[],
): void {
  meter()
    .createObservableCounter(name)
    .addCallback((result) => {
      for (const { value, attributes } of read()) result.observe(value, attributes);
    });
}
