import { createServer, type IncomingMessage, type RequestListener, type Server } from 'node:http';
import { isIP } from 'node:net';

/** Limits every HTTP listener of the gateway applies: slow or idle clients are cut off, connections are capped. */
export interface HttpLimits {
  /** A request whose headers have not all arrived by then is answered 408 and closed. */
  headersTimeoutMs: number;
  /** A request (headers and body) not complete by then is answered 408 and closed. */
  requestTimeoutMs: number;
  /** Open TCP connections at once (WebSockets included); more are closed at once by the server. */
  maxConnections: number;
}

export const HTTP_LIMITS_DEFAULTS = {
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 15_000,
  maxConnections: 256,
} as const satisfies HttpLimits;

/**
 * A node HTTP server with `limits` applied. Node checks request timeouts only every `connectionsCheckingInterval`
 * (30 s by default, fixed at construction), so half-finished requests could be held far past the limit: here the
 * check runs every 1/4 of the shorter timeout.
 */
export function createLimitedServer(limits: Partial<HttpLimits>, handler: RequestListener): Server {
  const l = { ...HTTP_LIMITS_DEFAULTS, ...limits };
  const checkEveryMs = Math.max(50, Math.min(1_000, Math.floor(Math.min(l.headersTimeoutMs, l.requestTimeoutMs) / 4)));
  const http = createServer({ connectionsCheckingInterval: checkEveryMs }, handler);
  http.headersTimeout = l.headersTimeoutMs;
  http.requestTimeout = Math.max(l.requestTimeoutMs, l.headersTimeoutMs);
  http.maxConnections = l.maxConnections;
  // An idle keep-alive connection holds a slot of `maxConnections`: let it go soon.
  http.keepAliveTimeout = Math.min(5_000, l.headersTimeoutMs);
  return http;
}

/** A host or address without IPv6 brackets, lower case. */
const bare = (host: string) => host.replace(/^\[|\]$/g, '').toLowerCase();

/** Whether a listen address is reachable from this machine only. */
export function isLoopback(host: string): boolean {
  const h = bare(host);
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

/** Host names a browser can reach us by without DNS rebinding: IP literals and localhost. */
export function isLiteralOrLocalHost(hostname: string): boolean {
  const h = bare(hostname);
  return isIP(h) !== 0 || h === 'localhost' || h.endsWith('.localhost');
}

/**
 * Whether a request's `Host` names this server: an IP literal, localhost, or one of `allowedHosts` (names, with
 * or without a port). A DNS-rebinding page has an attacker's name in both `Host` and `Origin`, so checking that
 * they agree is not enough; the name itself must be ours.
 */
export function hostAllowed(host: string | undefined, allowedHosts: readonly string[]): boolean {
  if (!host) return false;
  let hostname: string;
  try {
    hostname = new URL(`http://${host}`).hostname;
  } catch {
    return false;
  }
  if (isLiteralOrLocalHost(hostname)) return true;
  const lower = host.toLowerCase();
  return allowedHosts.some((a) => {
    const allowed = a.toLowerCase();
    return allowed === lower || allowed === hostname.toLowerCase();
  });
}

/**
 * Whether a browser request comes from our own page: no `Origin` (not a browser: a cross-site page cannot make
 * one without it) or an `Origin` whose host is the request's `Host`.
 */
export function sameOrigin(req: IncomingMessage): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  try {
    return new URL(origin).host === req.headers.host;
  } catch {
    return false;
  }
}

/**
 * The client's address: the socket's peer, or behind a trusted reverse proxy the last address it appended to
 * `X-Forwarded-For` (the earlier ones are the client's own claims).
 */
export function clientAddress(req: IncomingMessage, trustProxy: boolean): string {
  const peer = req.socket.remoteAddress ?? 'unknown';
  if (!trustProxy) return peer;
  const forwarded = req.headers['x-forwarded-for'];
  const last = (Array.isArray(forwarded) ? forwarded.join(',') : (forwarded ?? '')).split(',').pop()?.trim();
  return last && isIP(last) ? last : peer;
}
