import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { gunzipSync } from 'node:zlib';

export type AttrValue = string | number | boolean | AttrValue[];

export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  /** Resource attribute `service.name`. */
  serviceName: string;
  resource: Record<string, AttrValue>;
  attributes: Record<string, AttrValue>;
  startMs: number;
  endMs: number;
  durationMs: number;
  statusCode?: number;
  kind?: number;
  events: ReceivedSpanEvent[];
  /** Span links (e.g. work in its own trace that points back at the turn that caused it). */
  links: { traceId: string; spanId: string }[];
}

export interface ReceivedSpanEvent {
  name: string;
  timeMs: number;
  attributes: Record<string, AttrValue>;
}

export interface ReceivedMetric {
  name: string;
  serviceName: string;
  dataPoints: unknown[];
}

export interface OtlpReceiver {
  /** 'http://127.0.0.1:PORT', the value for OTEL_EXPORTER_OTLP_ENDPOINT. */
  endpoint: string;
  spans(): ReceivedSpan[];
  waitForSpans(predicate: (all: ReceivedSpan[]) => boolean, timeoutMs?: number): Promise<ReceivedSpan[]>;
  metrics(): ReceivedMetric[];
  clear(): void;
  stop(): Promise<void>;
}

// --- OTLP/JSON shapes (only the fields we read) ---
interface OtlpAnyValue {
  stringValue?: string;
  intValue?: string | number;
  doubleValue?: number | string;
  boolValue?: boolean;
  bytesValue?: string;
  arrayValue?: { values?: OtlpAnyValue[] };
  kvlistValue?: { values?: OtlpKeyValue[] };
}
interface OtlpKeyValue {
  key: string;
  value?: OtlpAnyValue;
}
interface OtlpResource {
  attributes?: OtlpKeyValue[];
}
interface OtlpSpan {
  traceId?: string;
  spanId?: string;
  parentSpanId?: string;
  name?: string;
  kind?: number;
  startTimeUnixNano?: string | number;
  endTimeUnixNano?: string | number;
  attributes?: OtlpKeyValue[];
  events?: { name?: string; timeUnixNano?: string | number; attributes?: OtlpKeyValue[] }[];
  links?: { traceId?: string; spanId?: string }[];
  status?: { code?: number };
}
interface OtlpTracesRequest {
  resourceSpans?: { resource?: OtlpResource; scopeSpans?: { spans?: OtlpSpan[] }[] }[];
}
interface OtlpMetric {
  name?: string;
  [kind: string]: unknown;
}
interface OtlpMetricsRequest {
  resourceMetrics?: { resource?: OtlpResource; scopeMetrics?: { metrics?: OtlpMetric[] }[] }[];
}

export function decodeAnyValue(value: OtlpAnyValue | undefined): AttrValue {
  if (!value) return '';
  if (value.stringValue !== undefined) return value.stringValue;
  // int64 is a JSON string in OTLP/JSON (it may exceed 2^53); tests want plain numbers.
  if (value.intValue !== undefined) return Number(value.intValue);
  if (value.doubleValue !== undefined) return Number(value.doubleValue);
  if (value.boolValue !== undefined) return value.boolValue;
  if (value.arrayValue !== undefined) return (value.arrayValue.values ?? []).map(decodeAnyValue);
  if (value.bytesValue !== undefined) return value.bytesValue;
  if (value.kvlistValue !== undefined) return JSON.stringify(decodeAttributes(value.kvlistValue.values));
  return '';
}

export function decodeAttributes(list: OtlpKeyValue[] | undefined): Record<string, AttrValue> {
  const out: Record<string, AttrValue> = {};
  for (const { key, value } of list ?? []) out[key] = decodeAnyValue(value);
  return out;
}

/** OTLP/JSON ids are hex; some producers send base64 (the protobuf JSON mapping). Normalise to hex. */
function idToHex(id: string | undefined): string {
  if (!id) return '';
  if (/^[0-9a-f]+$/i.test(id)) return id.toLowerCase();
  return Buffer.from(id, 'base64').toString('hex');
}

/** Nanoseconds (string or number) → milliseconds, keeping microsecond precision. */
function nanosToMs(nanos: string | number | undefined): number {
  if (nanos === undefined) return 0;
  return Number(BigInt(nanos) / 1000n) / 1000;
}

export function flattenTraces(body: OtlpTracesRequest): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  for (const rs of body.resourceSpans ?? []) {
    const resource = decodeAttributes(rs.resource?.attributes);
    const serviceName = String(resource['service.name'] ?? '');
    for (const ss of rs.scopeSpans ?? []) {
      for (const span of ss.spans ?? []) {
        const startMs = nanosToMs(span.startTimeUnixNano);
        const endMs = nanosToMs(span.endTimeUnixNano);
        const parentSpanId = idToHex(span.parentSpanId);
        out.push({
          traceId: idToHex(span.traceId),
          spanId: idToHex(span.spanId),
          ...(parentSpanId ? { parentSpanId } : {}),
          name: span.name ?? '',
          serviceName,
          resource,
          attributes: decodeAttributes(span.attributes),
          startMs,
          endMs,
          durationMs: endMs - startMs,
          ...(span.status?.code !== undefined ? { statusCode: span.status.code } : {}),
          ...(span.kind !== undefined ? { kind: span.kind } : {}),
          events: (span.events ?? []).map((e) => ({
            name: e.name ?? '',
            timeMs: nanosToMs(e.timeUnixNano),
            attributes: decodeAttributes(e.attributes),
          })),
          links: (span.links ?? []).map((l) => ({ traceId: idToHex(l.traceId), spanId: idToHex(l.spanId) })),
        });
      }
    }
  }
  return out;
}

const METRIC_KINDS = ['sum', 'gauge', 'histogram', 'exponentialHistogram', 'summary'] as const;

export function flattenMetrics(body: OtlpMetricsRequest): ReceivedMetric[] {
  const out: ReceivedMetric[] = [];
  for (const rm of body.resourceMetrics ?? []) {
    const serviceName = String(decodeAttributes(rm.resource?.attributes)['service.name'] ?? '');
    for (const sm of rm.scopeMetrics ?? []) {
      for (const metric of sm.metrics ?? []) {
        const kind = METRIC_KINDS.find((k) => metric[k] !== undefined);
        const data = kind ? (metric[kind] as { dataPoints?: unknown[] }) : undefined;
        out.push({ name: metric.name ?? '', serviceName, dataPoints: data?.dataPoints ?? [] });
      }
    }
  }
  return out;
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const raw = Buffer.concat(chunks);
  return (req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw).toString('utf8');
}

/** In-process OTLP/HTTP JSON collector on a free loopback port, for asserting on exported spans. */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  let spans: ReceivedSpan[] = [];
  let metrics: ReceivedMetric[] = [];

  const reply = (res: ServerResponse, status: number, body: string, type = 'text/plain') => {
    res.writeHead(status, { 'content-type': type }).end(body);
  };

  const server = createServer((req, res) => {
    void (async () => {
      const path = (req.url ?? '').split('?')[0];
      if (req.method !== 'POST' || (path !== '/v1/traces' && path !== '/v1/metrics')) {
        return reply(res, 404, 'testkit OTLP receiver: only POST /v1/traces and /v1/metrics');
      }
      if ((req.headers['content-type'] ?? '').includes('protobuf')) {
        return reply(
          res,
          415,
          'testkit OTLP receiver accepts OTLP/HTTP JSON only; set OTEL_EXPORTER_OTLP_PROTOCOL=http/json',
        );
      }
      let body: unknown;
      try {
        body = JSON.parse(await readBody(req));
      } catch (err) {
        return reply(res, 400, `testkit OTLP receiver: invalid JSON body (${String(err)})`);
      }
      if (path === '/v1/traces') spans.push(...flattenTraces(body as OtlpTracesRequest));
      else metrics.push(...flattenMetrics(body as OtlpMetricsRequest));
      reply(res, 200, '{}', 'application/json');
    })().catch((err: unknown) => reply(res, 500, `testkit OTLP receiver error: ${String(err)}`));
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;

  return {
    endpoint: `http://127.0.0.1:${port}`,
    spans: () => [...spans],
    metrics: () => [...metrics],
    clear: () => {
      spans = [];
      metrics = [];
    },
    async waitForSpans(predicate, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const all = [...spans];
        if (predicate(all)) return all;
        if (Date.now() >= deadline) {
          const names = all.map((s) => `${s.serviceName}:${s.name}`).join(', ') || '(none)';
          throw new Error(`waitForSpans timed out after ${timeoutMs} ms; received ${all.length} spans: ${names}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    },
    stop: () =>
      new Promise<void>((resolve) => {
        // Exporters keep connections alive; drop them or close() would wait for their idle timeout.
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
