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
 * Now, in epoch milliseconds with microseconds: the process's monotonic clock from its time origin. (Date.now()
 * has whole milliseconds, and the SDK anchors a span whose parent is in another process on it — a hop between
 * two stages would read up to 1 ms off.)
 */
export function preciseNow(): number {
  return performance.timeOrigin + performance.now();
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
