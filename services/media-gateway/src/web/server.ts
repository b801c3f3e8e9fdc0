import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { Logger } from '@va/telemetry';
import { WebSocketServer, type WebSocket } from 'ws';
import { clientAddress, createLimitedServer, hostAllowed, sameOrigin } from '../http-limits.js';
import { ClientLimiter } from './client-limits.js';
import { acceptSocket, watchConnections, type Sockets, type WebConnection } from './connection.js';
import { CLOSE, countRefusal, WEB_LIMITS_DEFAULTS, type WebLimits } from './limits.js';
import type { SessionFactory } from './session.js';

/** `services/media-gateway/web`, from `src/web/` (tests) and from `dist/web/` (`node dist/main.js`) alike. */
export const DEFAULT_STATIC_DIR = fileURLToPath(new URL('../../web/', import.meta.url));

/** The only files served: the talk page and its scripts. */
const STATIC_FILES: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/index.html': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/mic-worklet.js': { file: 'mic-worklet.js', type: 'text/javascript; charset=utf-8' },
};

export { CLOSE, WEB_LIMITS_DEFAULTS, type WebLimits } from './limits.js';

export interface WebServerOptions extends Partial<WebLimits> {
  factory: SessionFactory;
  host?: string;
  /** 0: any free port. */
  port?: number;
  /** Host names (besides IP literals and localhost) the page is served under; others are refused (DNS rebinding). */
  allowedHosts?: readonly string[];
  /** Behind a reverse proxy: the client's address is the last one in `X-Forwarded-For`. */
  trustProxy?: boolean;
  staticDir?: string;
  log?: Logger;
}

export interface WebServer {
  readonly url: string;
  readonly port: number;
  /** Sockets with a session open or opening. */
  readonly sessions: number;
  /** The most a socket has had unsent so far (bytes): the memory a slow client can make the gateway hold. */
  readonly peakBufferedBytes: number;
  close(): Promise<void>;
}

/**
 * The web transport: serves the talk page, and on `/ws` gives each socket its own session. Binary messages from
 * the page are the microphone (PCM16 mono 16 kHz, any size); a real-time clock feeds it to the session 20 ms at a
 * time (comfort noise when the page has sent nothing) and sends back, as binary, each agent frame to play. The
 * transcript, replies and latencies go to the page as JSON text. The socket closing closes the session.
 *
 * Nobody can lock the page for others or grow the gateway without bound: a session cap, per-client session and
 * connect-rate limits, an idle timeout and pings, a message-rate limit, bounded send buffers, Host/Origin checks
 * and HTTP timeouts and a connection cap (`WebLimits`).
 */
export async function startWebServer(opts: WebServerOptions): Promise<WebServer> {
  const limits: WebLimits = { ...WEB_LIMITS_DEFAULTS, ...definedOnly(opts) };
  const allowedHosts = opts.allowedHosts ?? [];
  const staticDir = opts.staticDir ?? DEFAULT_STATIC_DIR;
  const log = opts.log;
  const clients = new ClientLimiter(limits);
  const live = new Map<WebSocket, WebConnection>();
  const closing = new Set<Promise<void>>();
  let peakBufferedBytes = 0;
  const server = {
    log,
    notePeak(bytes: number) {
      if (bytes > peakBufferedBytes) peakBufferedBytes = bytes;
    },
  };

  const sockets: Sockets = { live, closing, clients, limits, server, factory: opts.factory, log };

  const http = createLimitedServer(limits, (req, res) => {
    if (!hostAllowed(req.headers.host, allowedHosts)) return end(res, 421, 'text/plain', 'unknown host\n');
    void serveStatic(req, res, staticDir);
  });
  // ws refuses (closes with 1009) anything far beyond our own limit before buffering it; we answer the rest.
  const wss = new WebSocketServer({ noServer: true, maxPayload: limits.maxMessageBytes * 4 });

  http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const client = admitUpgrade(req, socket, allowedHosts, opts.trustProxy ?? false, clients);
    if (client === undefined) return;
    // `/ws?agent=<name>`: the agent this page talks to (checked when the session opens); `/ws?resume=<token>`:
    // the session a page lost its socket to (checked before anything is attached).
    const query = new URL(req.url ?? '/', 'http://x').searchParams;
    const agent = query.get('agent') ?? undefined;
    const resume = query.get('resume') ?? undefined;
    wss.handleUpgrade(req, socket, head, (ws) =>
      acceptSocket(ws, client, sockets, { ...(agent ? { agent } : {}), ...(resume ? { resume } : {}) }),
    );
  });

  const watchdog = watchConnections(live, limits, log);

  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve());
  });
  const addr = http.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  log?.info({ url: `http://${host}:${addr.port}/` }, 'web transport listening');

  return {
    url: `http://${host}:${addr.port}`,
    port: addr.port,
    get sessions() {
      return live.size;
    },
    get peakBufferedBytes() {
      return peakBufferedBytes;
    },
    async close() {
      clearInterval(watchdog);
      for (const [ws, conn] of live) {
        // The pages reconnect and resume their sessions on another instance.
        conn.shuttingDown = true;
        ws.close(CLOSE.normal, 'gateway shutting down');
        // A page that does not answer the closing handshake is cut off.
        setTimeout(() => ws.terminate(), 1000).unref();
      }
      await Promise.all([...closing]);
      wss.close();
      await closeHttp(http);
    },
  };
}

/**
 * Whether a WebSocket upgrade may go on: the `/ws` path, this site's page (Host allowed, same Origin: no other site
 * or DNS-rebound name may use the agent and the user's microphone), a client within its limits. Returns the
 * client's address, or refuses on the socket and returns undefined.
 */
function admitUpgrade(
  req: IncomingMessage,
  socket: Duplex,
  allowedHosts: readonly string[],
  trustProxy: boolean,
  clients: ClientLimiter,
): string | undefined {
  const path = new URL(req.url ?? '/', 'http://x').pathname;
  if (path !== '/ws') return void refuse(socket, 404, 'Not Found');
  if (!hostAllowed(req.headers.host, allowedHosts) || !sameOrigin(req)) {
    countRefusal('origin');
    return void refuse(socket, 403, 'Forbidden');
  }
  const client = clientAddress(req, trustProxy);
  const refused = clients.admit(client);
  if (!refused) return client;
  countRefusal(refused);
  refuse(socket, 429, 'Too Many Requests');
  return undefined;
}

async function closeHttp(http: import('node:http').Server): Promise<void> {
  http.closeAllConnections();
  await new Promise<void>((resolve) => http.close(() => resolve()));
}

/** The options that were given (an `undefined` must not override a default). */
function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

async function serveStatic(req: IncomingMessage, res: ServerResponse, dir: string): Promise<void> {
  const path = new URL(req.url ?? '/', 'http://x').pathname;
  if (path === '/healthz') return end(res, 200, 'text/plain', 'ok\n');
  const entry = STATIC_FILES[path];
  if (!entry) return end(res, 404, 'text/plain', 'not found\n');
  if (req.method !== 'GET' && req.method !== 'HEAD') return end(res, 405, 'text/plain', 'method not allowed\n');
  try {
    const body = await readFile(join(dir, entry.file));
    res.writeHead(200, { 'content-type': entry.type, 'cache-control': 'no-cache' });
    res.end(req.method === 'HEAD' ? undefined : body);
  } catch {
    end(res, 500, 'text/plain', `${entry.file} is missing from ${dir}\n`);
  }
}

function end(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type });
  res.end(body);
}

function refuse(socket: Duplex, status: number, text: string): void {
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
}
