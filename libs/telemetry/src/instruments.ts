import type { Counter, Histogram, UpDownCounter } from '@opentelemetry/api';
import { METRIC } from './names.js';
import { meter } from './setup.js';

type MetricName = (typeof METRIC)[keyof typeof METRIC];

// Instruments are created lazily so the meter provider registered by startTelemetry() is the one used.
const counters = new Map<MetricName, Counter>();
const upDowns = new Map<MetricName, UpDownCounter>();
const histograms = new Map<MetricName, Histogram>();

export function counter(name: MetricName): Counter {
  let c = counters.get(name);
  if (!c) counters.set(name, (c = meter().createCounter(name)));
  return c;
}

export function upDownCounter(name: MetricName): UpDownCounter {
  let c = upDowns.get(name);
  if (!c) upDowns.set(name, (c = meter().createUpDownCounter(name)));
  return c;
}

/** Latency histograms, in milliseconds. */
export function histogram(name: MetricName): Histogram {
  let h = histograms.get(name);
  if (!h) histograms.set(name, (h = meter().createHistogram(name, { unit: 'ms' })));
  return h;
}
