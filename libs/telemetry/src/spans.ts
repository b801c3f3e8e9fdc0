import {
  context as otelContext,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Link,
  type Span,
  type TimeInput,
} from '@opentelemetry/api';
import { ATTR, type SpanName } from './names.js';
import { tracer } from './setup.js';

export interface StageSpanOptions {
  /** The context carried by the message that started this work (see bus: extract from NATS headers). */
  parent?: Context;
  sessionId?: string;
  turnId?: string;
  stage?: string;
  attributes?: Attributes;
  startTime?: TimeInput;
  /** Start a new trace (work off a turn's critical path, e.g. summaries), linked to `links` instead. */
  root?: boolean;
  links?: Link[];
}

/**
 * The offset from this process's monotonic clock to the system clock, to a few microseconds. Date.now() has
 * whole milliseconds, performance.timeOrigin is off by up to a few ms between processes, and the SDK anchors a
 * span whose parent is in another process on Date.now(): a hop between two stages measured with either reads
 * milliseconds off. Calibrated once on a tick of Date.now(), then kept within the bounds each reading gives.
 */
let clockOffset = calibrate();

function calibrate(): number {
  const start = Date.now();
  let d = start;
  let p = performance.now();
  // Wait for the next millisecond to begin (at most 1 ms, once per process): that instant is known exactly.
  while (d === start) {
    p = performance.now();
    d = Date.now();
  }
  return d - p;
}

/** Now, in epoch milliseconds with microseconds, comparable across processes on one machine. */
export function preciseNow(): number {
  const p = performance.now();
  const lower = Date.now() - p;
  // The true offset lies in [lower, lower + 1): follow the system clock if it moved (NTP), never jump otherwise.
  if (clockOffset < lower) clockOffset = lower;
  else if (clockOffset > lower + 1) clockOffset = lower + 1;
  return p + clockOffset;
}

/** Starts a stage span as a child of the message's context. The caller ends it. */
export function startStageSpan(name: SpanName, opts: StageSpanOptions = {}): Span {
  const attributes: Attributes = { ...opts.attributes };
  if (opts.sessionId !== undefined) attributes[ATTR.sessionId] = opts.sessionId;
  if (opts.turnId !== undefined) attributes[ATTR.turnId] = opts.turnId;
  if (opts.stage !== undefined) attributes[ATTR.stage] = opts.stage;
  const span = tracer().startSpan(
    name,
    {
      attributes,
      startTime: opts.startTime ?? preciseNow(),
      ...(opts.root ? { root: true } : {}),
      ...(opts.links ? { links: opts.links } : {}),
    },
    opts.parent ?? otelContext.active(),
  );
  // A span given its start time would end on Date.now() (whole ms): end it on the same precise clock.
  const end = span.end.bind(span);
  span.end = (endTime?: TimeInput) => end(endTime ?? preciseNow());
  return span;
}

/** Runs `fn` inside a stage span: the span is active within, records a thrown error, and always ends. */
export async function withStageSpan<T>(
  name: SpanName,
  opts: StageSpanOptions,
  fn: (span: Span) => Promise<T> | T,
): Promise<T> {
  const span = startStageSpan(name, opts);
  try {
    return await otelContext.with(trace.setSpan(opts.parent ?? otelContext.active(), span), () => fn(span));
  } catch (err) {
    recordError(span, err);
    throw err;
  } finally {
    span.end();
  }
}

export function recordError(span: Span, err: unknown): void {
  span.recordException(err instanceof Error ? err : new Error(String(err)));
  span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
}

/** The context a child of `span` should carry (to inject into an outgoing message). */
export function contextOf(span: Span, base: Context = otelContext.active()): Context {
  return trace.setSpan(base, span);
}
