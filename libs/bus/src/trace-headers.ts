import {
  context as otelContext,
  isSpanContextValid,
  trace,
  type Context,
  type TextMapGetter,
  type TextMapSetter,
} from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { relayedHeaders } from './origin.js';
import { headers as natsHeaders, type Msg, type MsgHdrs } from '@nats-io/transport-node';

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

/** `ctx`'s trace context as plain fields (`traceparent`, `tracestate`), to keep in KV state for a successor. */
export function traceFields(ctx?: Context): Record<string, string> {
  const hdrs = newHeaders({}, ctx);
  return Object.fromEntries(hdrs.keys().map((k) => [k, hdrs.get(k)]));
}

/** The context kept by {@link traceFields}. */
export function traceFromFields(fields: Record<string, string>): Context {
  return extractTrace(newHeaders(fields));
}

/**
 * Encoded trace headers per span context, for messages sent many times under one context (a turn's audio
 * frames): the headers are built and encoded once, and the same bytes go out with every frame. Bounded.
 */
export class TraceHeaderCache {
  private readonly byContext = new Map<string, MsgHdrs>();

  constructor(private readonly max = 256) {}

  /** The headers carrying `ctx`'s span context, or undefined when it has none. Never mutate what it returns. */
  get(ctx: Context): MsgHdrs | undefined {
    const sc = trace.getSpanContext(ctx);
    if (!sc || !isSpanContextValid(sc)) return undefined;
    const key = `${sc.traceId}-${sc.spanId}-${sc.traceFlags}-${sc.traceState?.serialize() ?? ''}`;
    let hdrs = this.byContext.get(key);
    if (!hdrs) {
      hdrs = injectTrace(natsHeaders(), ctx);
      // nats.js encodes a message's headers on every publish (its MsgHdrsImpl.encode, not in the public type):
      // hand it the bytes made once.
      const impl = hdrs as MsgHdrs & { encode?: () => Uint8Array };
      if (typeof impl.encode === 'function') {
        const encoded = impl.encode();
        impl.encode = () => encoded;
      }
      if (this.byContext.size >= this.max) this.byContext.clear();
      this.byContext.set(key, hdrs);
    }
    return hdrs;
  }
}

/** The raw header bytes of a received message, `undefined` when it has none, `null` when they cannot be read. */
export function rawHeaderBytes(m: Msg): Uint8Array | undefined | null {
  // nats.js keeps the header block undecoded until `headers` is first read; its fields are not public API, so
  // anything unexpected falls back to decoding (`null`).
  const impl = m as unknown as { _msg?: { hdr?: unknown }; _rdata?: unknown };
  const hdr = impl._msg?.hdr;
  if (typeof hdr !== 'number' || !(impl._rdata instanceof Uint8Array)) return null;
  return hdr > -1 ? impl._rdata.subarray(0, hdr) : undefined;
}

/**
 * Reads the trace context of a stream of messages (one subscription's audio frames): the header block is
 * compared with the previous message's and decoded only when it changed, i.e. about once a turn.
 */
export class TraceReader {
  private last: Uint8Array | undefined;
  private lastContext: Context | undefined;
  private lastRelayed: string | undefined;
  /** Header blocks decoded (for tests). */
  decoded = 0;
  /** Of the message last read: why its headers say nats-server relayed it (see `relayedHeaders`), if they do. */
  relayed: string | undefined;

  read(m: Msg): Context {
    const raw = rawHeaderBytes(m);
    if (raw === null) {
      this.decoded++;
      this.relayed = relayedHeaders(m.headers);
      return extractTrace(m.headers);
    }
    if (raw === undefined) {
      this.relayed = undefined;
      return otelContext.active();
    }
    if (this.lastContext && this.last && sameBytes(this.last, raw)) {
      this.relayed = this.lastRelayed;
      return this.lastContext;
    }
    this.decoded++;
    this.last = raw.slice();
    this.lastContext = extractTrace(m.headers);
    this.lastRelayed = this.relayed = relayedHeaders(m.headers);
    return this.lastContext;
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
