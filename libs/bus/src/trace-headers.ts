import { context as otelContext, type Context, type TextMapGetter, type TextMapSetter } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { headers as natsHeaders, type MsgHdrs } from '@nats-io/transport-node';

// The W3C propagator is used directly, not through the global API: trace context must cross the bus
// even in a process whose telemetry is not started (its spans are then non-recording but keep the ids).
const propagator = new W3CTraceContextPropagator();

const setter: TextMapSetter<MsgHdrs> = {
  set: (carrier, key, value) => carrier.set(key, value),
};

const getter: TextMapGetter<MsgHdrs | undefined> = {
  keys: (carrier) => carrier?.keys() ?? [],
  get: (carrier, key) => {
    if (!carrier?.has(key)) return undefined;
    return carrier.get(key);
  },
};

/** Writes `traceparent`/`tracestate` of `ctx` (default: the active context) into NATS headers. */
export function injectTrace(hdrs: MsgHdrs, ctx: Context = otelContext.active()): MsgHdrs {
  propagator.inject(ctx, hdrs, setter);
  return hdrs;
}

/** The context carried by a message's headers (the active context if it carries none). */
export function extractTrace(hdrs: MsgHdrs | undefined, base: Context = otelContext.active()): Context {
  return propagator.extract(base, hdrs, getter);
}

export function newHeaders(values: Record<string, string> = {}, ctx?: Context): MsgHdrs {
  const h = natsHeaders();
  for (const [k, v] of Object.entries(values)) h.set(k, v);
  return injectTrace(h, ctx);
}
