import { readFile } from 'node:fs/promises';
import { ATTR, SPAN } from '@va/telemetry';
import { flattenTraces, type AttrValue, type ReceivedSpan } from '@va/testkit';
import { z } from 'zod';
import type { ReportSpan } from './report.js';

/**
 * A turn's trace in the terminal: its spans as a waterfall (one bar per span, indented under its parent, offsets
 * and durations in ms, the stage's key latencies, span events), from the spans the demo collected or from Tempo.
 */

/** Span attributes worth a glance in a waterfall: the stage latencies first. Booleans only show when true. */
export const KEY_ATTRIBUTES = [
  ATTR.e2eMs,
  ATTR.ttftMs,
  ATTR.ttfbMs,
  ATTR.eouDelayMs,
  ATTR.answerGapMs,
  ATTR.bargeInStopMs,
  ATTR.finalDelayMs,
  ATTR.historyMs,
  ATTR.bufferWaitMs,
  ATTR.firstSource,
  ATTR.source,
  ATTR.toolName,
  ATTR.toolOutcome,
  ATTR.interrupted,
  ATTR.filler,
  ATTR.preemptive,
  ATTR.fallback,
  ATTR.skipped,
] as const;

/** OTLP status code ERROR. */
const STATUS_ERROR = 2;
const round1 = (ms: number) => Math.round(ms * 10) / 10;

/** A span's parent when it is among `spans` (a parent never received makes the span a top-level one). */
function parentIn(span: ReceivedSpan, ids: ReadonlySet<string>): string | undefined {
  return span.parentSpanId !== undefined && ids.has(span.parentSpanId) ? span.parentSpanId : undefined;
}

/** The turn's root span: the parentless `turn` span (else the earliest parentless span). */
export function rootOf(spans: readonly ReceivedSpan[]): ReceivedSpan | undefined {
  const ids = new Set(spans.map((s) => s.spanId));
  const tops = spans.filter((s) => parentIn(s, ids) === undefined).sort((a, b) => a.startMs - b.startMs);
  return tops.find((s) => s.name === SPAN.turn) ?? tops[0];
}

/**
 * One trace's spans as waterfall rows: depth-first from the root (children by start time), times relative to
 * the root's start (or the earliest span's), key attributes and events kept.
 */
export function spanRows(spans: readonly ReceivedSpan[]): ReportSpan[] {
  const ids = new Set(spans.map((s) => s.spanId));
  const children = new Map<string | undefined, ReceivedSpan[]>();
  for (const s of spans) {
    const parent = parentIn(s, ids);
    children.set(parent, [...(children.get(parent) ?? []), s]);
  }
  const byStart = (a: ReceivedSpan, b: ReceivedSpan) => a.startMs - b.startMs || a.name.localeCompare(b.name);
  const origin = rootOf(spans)?.startMs ?? Math.min(...spans.map((s) => s.startMs));
  const rows: ReportSpan[] = [];
  const visit = (span: ReceivedSpan, depth: number) => {
    const attributes: Record<string, AttrValue> = {};
    for (const key of KEY_ATTRIBUTES) {
      const v = span.attributes[key];
      if (v !== undefined && v !== false) attributes[key] = v;
    }
    rows.push({
      name: span.name,
      service: span.serviceName,
      startMs: Math.round(span.startMs - origin),
      durationMs: round1(span.durationMs),
      depth,
      attributes,
      ...(span.statusCode === STATUS_ERROR ? { error: true } : {}),
      events: span.events.map((e) => ({ name: e.name, atMs: Math.round(e.timeMs - origin), attributes: e.attributes })),
    });
    for (const child of (children.get(span.spanId) ?? []).sort(byStart)) visit(child, depth + 1);
  };
  for (const top of (children.get(undefined) ?? []).sort(byStart)) visit(top, 0);
  return rows;
}

function formatValue(v: AttrValue): string {
  if (Array.isArray(v)) return `[${v.map(formatValue).join(',')}]`;
  return typeof v === 'number' ? String(round1(v)) : String(v);
}

function formatAttributes(attrs: Record<string, AttrValue> | undefined): string {
  return Object.entries(attrs ?? {})
    .map(([k, v]) => `${k}=${formatValue(v)}`)
    .join(' ');
}

const formatDuration = (ms: number) => (ms < 10 ? ms.toFixed(1) : ms.toFixed(0));

/**
 * A text waterfall of one turn's spans: one bar per span on a shared time axis, indented under its parent, with
 * its service, offset and duration (ms), its key attributes, and its events on the lines below.
 */
export function waterfall(turn: { spans: readonly ReportSpan[] }, width = 48): string {
  const spans = turn.spans;
  if (spans.length === 0) return '  (no spans)';
  const from = Math.min(0, ...spans.map((s) => s.startMs));
  const end = Math.max(from + 1, ...spans.map((s) => s.startMs + s.durationMs));
  const scale = width / (end - from);
  const nameWidth = Math.max(16, ...spans.map((s) => 2 * (s.depth ?? 0) + s.name.length));
  const serviceWidth = Math.max(13, ...spans.map((s) => s.service.length));
  const lines: string[] = [];
  for (const s of spans) {
    const indent = '  '.repeat(s.depth ?? 0);
    const at = Math.min(width - 1, Math.max(0, Math.floor((s.startMs - from) * scale)));
    const len = Math.max(1, Math.round(s.durationMs * scale));
    const bar = ' '.repeat(at) + '█'.repeat(Math.min(len, width - at));
    const attrs = formatAttributes(s.attributes);
    lines.push(
      `  ${(indent + s.name).padEnd(nameWidth)} ${s.service.padEnd(serviceWidth)} |${bar.padEnd(width)}| ` +
        `${String(s.startMs).padStart(6)} +${formatDuration(s.durationMs).padStart(6)} ms` +
        `${s.error ? '  ERROR' : ''}${attrs ? `  ${attrs}` : ''}`,
    );
    for (const e of s.events ?? []) {
      const eventAttrs = formatAttributes(e.attributes);
      lines.push(`  ${indent}  · ${e.name} at ${e.atMs} ms${eventAttrs ? `  ${eventAttrs}` : ''}`);
    }
  }
  return lines.join('\n');
}

/** One trace of a turn: its id and spans. */
export interface TraceSpans {
  traceId: string;
  spans: ReceivedSpan[];
}

/** The traces among `spans` that are user turns (a `turn` root span), oldest first. */
export function turnTraces(spans: readonly ReceivedSpan[]): TraceSpans[] {
  const byTrace = new Map<string, ReceivedSpan[]>();
  for (const s of spans) byTrace.set(s.traceId, [...(byTrace.get(s.traceId) ?? []), s]);
  return [...byTrace]
    .map(([traceId, mine]) => ({ traceId, spans: mine, root: rootOf(mine) }))
    .filter((t) => t.root?.name === SPAN.turn)
    .sort((a, b) => a.root!.startMs - b.root!.startMs)
    .map(({ traceId, spans: mine }) => ({ traceId, spans: mine }));
}

/** A trace's heading and waterfall: trace id, turn, session, span and service counts, total time. */
export function renderTrace(trace: TraceSpans, width = 48): string {
  const rows = spanRows(trace.spans);
  const root = rootOf(trace.spans);
  const end = Math.max(0, ...rows.map((r) => r.startMs + r.durationMs));
  const services = new Set(trace.spans.map((s) => s.serviceName)).size;
  const turnId = root?.attributes[ATTR.turnId];
  const sessionId = root?.attributes[ATTR.sessionId];
  const head = [
    `trace ${trace.traceId}`,
    ...(root ? [`${root.name}${turnId !== undefined ? ` ${String(turnId)}` : ''}`] : []),
    ...(sessionId !== undefined ? [`session ${String(sessionId)}`] : []),
    ...(root ? [new Date(root.startMs).toISOString()] : []),
    `${rows.length} spans, ${services} services, ${Math.round(end)} ms`,
  ].join(' · ');
  return `${head}\n${waterfall({ spans: rows }, width)}`;
}

/** A trace id as 32 lower-case hex digits (Tempo drops leading zeros in search results); undefined when not hex. */
export function normalizeTraceId(id: string): string | undefined {
  const hex = id.trim().toLowerCase();
  return /^[0-9a-f]{1,32}$/.test(hex) ? hex.padStart(32, '0') : undefined;
}

// --- Tempo and OTLP JSON ---

interface OtlpJsonResource {
  resource?: unknown;
  scopeSpans?: unknown[];
  /** OTLP before 0.15 (Tempo 1.x). */
  instrumentationLibrarySpans?: unknown[];
}

/**
 * Spans of an OTLP/JSON trace in any shape Tempo answers `GET /api/traces/<id>` with: `{batches: [...]}` (Tempo
 * 1.x and 2.x; `instrumentationLibrarySpans` in 1.x, `scopeSpans` after), `{resourceSpans: [...]}` (OTLP, an
 * export request) or `{trace: {resourceSpans}}` (`/api/v2/traces`). Ids may be hex or base64 (Tempo's protobuf
 * JSON mapping).
 */
export function spansFromOtlpJson(body: unknown): ReceivedSpan[] {
  const b = (body ?? {}) as { batches?: OtlpJsonResource[]; resourceSpans?: OtlpJsonResource[]; trace?: unknown };
  if (b.trace !== undefined && b.batches === undefined && b.resourceSpans === undefined) {
    return spansFromOtlpJson(b.trace);
  }
  const resources = [...(b.batches ?? []), ...(b.resourceSpans ?? [])];
  return flattenTraces({
    resourceSpans: resources.map((r) => ({
      resource: r.resource as never,
      scopeSpans: [...(r.scopeSpans ?? []), ...(r.instrumentationLibrarySpans ?? [])].map((scope) => ({
        spans: ((scope as { spans?: OtlpJsonSpan[] }).spans ?? []).map(enumsAsNumbers),
      })),
    })),
  });
}

interface OtlpJsonSpan {
  kind?: number | string;
  status?: { code?: number | string; message?: string };
  [field: string]: unknown;
}

/** Tempo writes enums by name (`SPAN_KIND_SERVER`, `STATUS_CODE_ERROR`); OTLP/JSON by number. */
const SPAN_KINDS = ['UNSPECIFIED', 'INTERNAL', 'SERVER', 'CLIENT', 'PRODUCER', 'CONSUMER'];
const STATUS_CODES = ['UNSET', 'OK', 'ERROR'];
const enumNumber = (v: number | string | undefined, prefix: string, names: string[]): number | undefined => {
  if (typeof v !== 'string') return v;
  const i = names.indexOf(v.replace(prefix, ''));
  return i >= 0 ? i : undefined;
};
function enumsAsNumbers(span: OtlpJsonSpan): never {
  const kind = enumNumber(span.kind, 'SPAN_KIND_', SPAN_KINDS);
  const code = enumNumber(span.status?.code, 'STATUS_CODE_', STATUS_CODES);
  return {
    ...span,
    kind,
    status: code === undefined ? {} : { code },
  } as never;
}

/** Tempo could not be asked, or answered with an error. */
export class TempoError extends Error {
  override name = 'TempoError';
}

async function tempoGet(base: string, path: string, timeoutMs: number): Promise<Response> {
  const url = `${base.replace(/\/+$/, '')}${path}`;
  try {
    return await fetch(url, { signal: AbortSignal.timeout(timeoutMs), headers: { accept: 'application/json' } });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    const why =
      (err as Error).name === 'TimeoutError'
        ? `no answer in ${timeoutMs} ms`
        : (cause?.code ?? cause?.message ?? (err as Error).message);
    throw new TempoError(`cannot reach Tempo at ${base} (${why}); is it running? Set --tempo URL or TEMPO_URL.`);
  }
}

async function tempoJson(res: Response, base: string, what: string): Promise<unknown> {
  if (!res.ok) {
    const body = (await res.text().catch(() => '')).trim().slice(0, 300);
    throw new TempoError(`Tempo at ${base} answered ${res.status} to ${what}${body ? `: ${body}` : ''}`);
  }
  try {
    return await res.json();
  } catch (err) {
    throw new TempoError(`Tempo at ${base} answered ${what} with invalid JSON (${String(err)})`);
  }
}

export interface TempoOptions {
  /** Per request (default 10 s). */
  timeoutMs?: number;
}

/** One trace from Tempo (`GET /api/traces/<id>`): its spans, or undefined when Tempo does not have it. */
export async function fetchTempoTrace(
  base: string,
  traceId: string,
  opts: TempoOptions = {},
): Promise<ReceivedSpan[] | undefined> {
  const res = await tempoGet(base, `/api/traces/${traceId}`, opts.timeoutMs ?? 10_000);
  if (res.status === 404) return undefined;
  const spans = spansFromOtlpJson(await tempoJson(res, base, `trace ${traceId}`));
  return spans.length > 0 ? spans : undefined;
}

const SearchResult = z.object({
  traces: z
    .array(
      z
        .object({ traceID: z.string(), startTimeUnixNano: z.string().regex(/^\d+$/).optional().catch(undefined) })
        .loose(),
    )
    .nullish()
    .transform((t) => t ?? []),
});

/**
 * The ids of the last `limit` turns Tempo holds, newest first: TraceQL `{ name = "turn" }`, or the tag search of
 * Tempo before TraceQL (1.x) when that is refused.
 */
export async function searchTempoTurns(base: string, limit: number, opts: TempoOptions = {}): Promise<string[]> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const traceQl = `{ name = "${SPAN.turn}" }`;
  let res = await tempoGet(base, `/api/search?q=${encodeURIComponent(traceQl)}&limit=${limit}`, timeoutMs);
  let what = `the search ${traceQl}`;
  if (res.status === 400 || res.status === 404 || res.status === 501) {
    res = await tempoGet(base, `/api/search?tags=${encodeURIComponent(`name=${SPAN.turn}`)}&limit=${limit}`, timeoutMs);
    what = `the search name=${SPAN.turn}`;
  }
  const parsed = SearchResult.safeParse(await tempoJson(res, base, what));
  if (!parsed.success) throw new TempoError(`Tempo at ${base} answered ${what} with an unexpected body`);
  return parsed.data.traces
    .map((t) => ({ id: normalizeTraceId(t.traceID), start: BigInt(t.startTimeUnixNano ?? '0') }))
    .filter((t): t is { id: string; start: bigint } => t.id !== undefined)
    .sort((a, b) => (a.start < b.start ? 1 : a.start > b.start ? -1 : 0))
    .slice(0, limit)
    .map((t) => t.id);
}

// --- spans files ---

const AttrValueSchema: z.ZodType<AttrValue> = z.lazy(() =>
  z.union([z.string(), z.number(), z.boolean(), z.array(AttrValueSchema)]),
);
const Attrs = z.record(z.string(), AttrValueSchema);
const ReceivedSpanSchema = z.object({
  traceId: z.string(),
  spanId: z.string(),
  parentSpanId: z.string().optional(),
  name: z.string(),
  serviceName: z.string(),
  resource: Attrs.default({}),
  attributes: Attrs.default({}),
  startMs: z.number(),
  endMs: z.number(),
  durationMs: z.number(),
  statusCode: z.number().optional(),
  kind: z.number().optional(),
  events: z.array(z.object({ name: z.string(), timeMs: z.number(), attributes: Attrs.default({}) })).default([]),
  links: z.array(z.object({ traceId: z.string(), spanId: z.string() })).default([]),
});

/** A spans file is not one. */
export class SpansFileError extends Error {
  override name = 'SpansFileError';
}

/**
 * Reads a spans file: the demo's `<session>.spans.json` (ReceivedSpan[]), or an OTLP/JSON trace (e.g. saved from
 * Tempo's `/api/traces/<id>`).
 */
export async function readSpansFile(path: string): Promise<ReceivedSpan[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new SpansFileError(`cannot read ${path}: ${(err as Error).message}`);
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (err) {
    throw new SpansFileError(`${path} is not JSON: ${(err as Error).message}`);
  }
  if (!Array.isArray(body)) {
    if (body && typeof body === 'object') return spansFromOtlpJson(body);
    throw new SpansFileError(`${path}: expected an array of spans or an OTLP/JSON trace`);
  }
  const parsed = z.array(ReceivedSpanSchema).safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new SpansFileError(`${path}: not a spans file (${issue.path.join('.')}: ${issue.message})`);
  }
  return parsed.data;
}
