import { metrics, trace, type Meter, type Tracer } from '@opentelemetry/api';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { BudgetsError, loadBudgets } from './budgets.js';
import { RESOURCE } from './names.js';

export interface TelemetryOptions {
  serviceName: string;
  instanceId?: string;
  version?: string;
  /** OTLP/HTTP base URL; default OTEL_EXPORTER_OTLP_ENDPOINT. With none, spans are made but not exported. */
  endpoint?: string;
  /** How long finished spans wait before export; default OTEL_BSP_SCHEDULE_DELAY or 1000 ms. */
  spanExportDelayMs?: number;
  /** Metric export period; default OTEL_METRIC_EXPORT_INTERVAL or 10000 ms. */
  metricExportIntervalMs?: number;
}

const TRACER_NAME = 'voice-agent';
let sdk: NodeSDK | undefined;

function envNumber(name: string): number | undefined {
  const v = Number(process.env[name]);
  return Number.isFinite(v) && v > 0 ? v : undefined;
}

/** Starts tracing and metrics for this process (once). Returns whether an exporter is configured. */
export function startTelemetry(opts: TelemetryOptions): { exporting: boolean } {
  if (sdk) return { exporting: true };
  // Latency budgets (VA_BUDGETS) are checked at start, like the rest of a stage's configuration.
  try {
    loadBudgets();
  } catch (err) {
    if (!(err instanceof BudgetsError)) throw err;
    process.stderr.write(`invalid configuration:\n  ${err.message}\n`);
    process.exit(2);
  }
  const endpoint = (opts.endpoint ?? process.env.OTEL_EXPORTER_OTLP_ENDPOINT)?.replace(/\/+$/, '');
  const resource = resourceFromAttributes({
    [RESOURCE.serviceName]: opts.serviceName,
    ...(opts.instanceId ? { [RESOURCE.serviceInstanceId]: opts.instanceId } : {}),
    ...(opts.version ? { [RESOURCE.serviceVersion]: opts.version } : {}),
  });
  if (!endpoint) return { exporting: false };
  sdk = new NodeSDK({
    resource,
    autoDetectResources: false,
    // Explicit JSON-over-HTTP exporters: configured from env alone NodeSDK would pick protobuf.
    spanProcessors: [
      new BatchSpanProcessor(new OTLPTraceExporter({ url: `${endpoint}/v1/traces` }), {
        scheduledDelayMillis: opts.spanExportDelayMs ?? envNumber('OTEL_BSP_SCHEDULE_DELAY') ?? 1000,
      }),
    ],
    metricReaders: [
      new PeriodicExportingMetricReader({
        exporter: new OTLPMetricExporter({ url: `${endpoint}/v1/metrics` }),
        exportIntervalMillis: opts.metricExportIntervalMs ?? envNumber('OTEL_METRIC_EXPORT_INTERVAL') ?? 10_000,
      }),
    ],
    instrumentations: [],
  });
  sdk.start();
  return { exporting: true };
}

/** Flushes and stops telemetry. Never throws: losing telemetry must not crash or hang a shutdown. */
export async function shutdownTelemetry(timeoutMs = 5000): Promise<void> {
  const current = sdk;
  sdk = undefined;
  if (!current) return;
  try {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      current.shutdown(),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
        timer.unref();
      }),
    ]);
    clearTimeout(timer);
  } catch (err) {
    process.stderr.write(`telemetry shutdown failed: ${String(err)}\n`);
  }
}

export function tracer(): Tracer {
  return trace.getTracer(TRACER_NAME);
}

export function meter(): Meter {
  return metrics.getMeter(TRACER_NAME);
}

/** Whether transcripts and replies may be written into spans (VA_TRACE_TEXT=1). */
export function traceText(): boolean {
  return process.env.VA_TRACE_TEXT === '1';
}
