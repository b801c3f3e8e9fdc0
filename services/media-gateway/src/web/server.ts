import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { SessionRefusedError } from '@va/actor';
import { ATTR, counter, METRIC, type Logger } from '@va/telemetry';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { Framer } from '@va/audio';
import { FRAME_MS } from '@va/protocol';
import { micSilence } from '../actor.js';
import {
  clientAddress,
  HTTP_LIMITS_DEFAULTS,
  createLimitedServer,
  hostAllowed,
  sameOrigin,
  type HttpLimits,
} from '../http-limits.js';
import { MicQueue } from '../mic-queue.js';
import { runClock } from '../wav-transport.js';
import { CLIENT_LIMITS_DEFAULTS, ClientLimiter, type ClientLimits } from './client-limits.js';
import { WEB_SAMPLE_RATE, type PageEvent, type SessionFactory, type WebSession } from './session.js';

/** `services/media-gateway/web`, from `src/web/` (tests) and from `dist/web/` (`node dist/main.js`) alike. */
export const DEFAULT_STATIC_DIR = fileURLToPath(new URL('../../web/', import.meta.url));

/** The only files served: the talk page and its scripts. */
const STATIC_FILES: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/index.html': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/mic-worklet.js': { file: 'mic-worklet.js', type: 'text/javascript; charset=utf-8' },
};

/**
 * WebSocket close codes the page acts on. 1013 (Try Again Later): the gateway or the pipeline is full; 1008
 * (Policy Violation): the client broke a limit (message rate); 4000: no microphone audio for the idle timeout.
 * The page reconnects only after other codes (the gateway went away).
 */
export const CLOSE = { normal: 1000, badMessage: 1008, internal: 1011, overloaded: 1013, idle: 4000 } as const;

/** Limits of the web transport; every one has an env variable in `main.ts` (README "Security"). */
export interface WebLimits extends ClientLimits, HttpLimits {
  /** Sessions at once over all clients. */
  maxSessions: number;
  /** Larger messages are refused with an error (a 20 ms frame is 640 bytes). */
  maxMessageBytes: number;
  /** Messages one socket may send per second (the page sends 50); beyond, the socket is closed (1008). */
  maxMessagesPerSecond: number;
  /** A socket that sends no microphone audio for this long is closed (4000). */
  idleTimeoutMs: number;
  /** A ping this often; a socket that has not answered the previous one by then is cut off. */
  pingIntervalMs: number;
  /** Microphone audio waiting for the clock beyond this is dropped, oldest first (bounds the added latency). */
  maxQueueMs: number;
  /** Agent audio is not sent while this much is still unsent to a slow socket. */
  maxBufferedBytes: number;
  /** A socket with this much unsent (a client that does not read) is cut off: memory per client is bounded. */
  maxSendBufferBytes: number;
}

export const WEB_LIMITS_DEFAULTS = {
  ...CLIENT_LIMITS_DEFAULTS,
  ...HTTP_LIMITS_DEFAULTS,
  maxSessions: 8,
  maxMessageBytes: 64 * 1024,
  maxMessagesPerSecond: 200,
  idleTimeoutMs: 30_000,
  pingIntervalMs: 15_000,
  maxQueueMs: 500,
  maxBufferedBytes: 256 * 1024,
  maxSendBufferBytes: 1024 * 1024,
} as const satisfies WebLimits;

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

const FRAME_SAMPLES = (WEB_SAMPLE_RATE * FRAME_MS) / 1000;
const DROP_REPORT_EVERY_MS = 5000;
/** A socket is told of its bad messages at most this often per kind (a flood of them gets one answer a second). */
const ERROR_EVERY_MS = 1000;

/** Counts a refused or cut-off client in `va.web.refused{va.reason}`. */
function countRefusal(reason: string): void {
  counter(METRIC.webRefused).add(1, { [ATTR.refusal]: reason });
}

/**
 * One socket and its session: the page's messages in (checked, rate-limited, reframed), the agent's frames and
 * events out (bounded: a client that does not read is cut off), idle and liveness checks.
 */
class WebConnection {
  /** The page's PCM16 bytes → 20 ms frames → the frames waiting for the session's next tick. */
  private readonly framer = new Framer(FRAME_SAMPLES);
  readonly mic: MicQueue;
  session: WebSession | undefined;
  lastAudioAt = performance.now();
  awaitingPong = false;
  private reportedDrops = 0;
  private reportedAt = -Infinity;
  /** When the page was last told of a refused message, per error code. */
  private readonly lastErrorAt = new Map<string, number>();
  private windowStart = performance.now();
  private windowMessages = 0;

  constructor(
    readonly ws: WebSocket,
    readonly client: string,
    private readonly limits: WebLimits,
    private readonly server: { notePeak(bytes: number): void; log?: Logger },
  ) {
    this.mic = new MicQueue(Math.max(1, Math.round(limits.maxQueueMs / FRAME_MS)));
  }

  /** Sends an event, or cuts the socket off if the client has stopped reading. */
  send(e: PageEvent): void {
    this.sendRaw(JSON.stringify(e), false);
  }

  /** Agent audio: skipped while the socket is backed up beyond `maxBufferedBytes` (the client catches up). */
  sendAudio(frame: Int16Array): void {
    if (this.ws.bufferedAmount > this.limits.maxBufferedBytes) return;
    this.sendRaw(Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength), true);
  }

  /**
   * Tells the page a message was refused — unless it was told of the same within the last second, or is not
   * reading (an answer per refused frame into a backed-up socket is what grew the gateway without bound).
   */
  refuseMessage(code: string, message: string): void {
    const now = performance.now();
    if (now - (this.lastErrorAt.get(code) ?? -Infinity) < ERROR_EVERY_MS) return;
    if (this.ws.bufferedAmount > this.limits.maxBufferedBytes) return;
    this.lastErrorAt.set(code, now);
    this.send({ type: 'error', code, message });
  }

  close(code: number, reason: string): void {
    if (this.ws.readyState === this.ws.OPEN || this.ws.readyState === this.ws.CONNECTING) this.ws.close(code, reason);
  }

  onMessage(data: RawData, isBinary: boolean): void {
    const now = performance.now();
    if (now - this.windowStart >= 1000) {
      this.windowStart = now;
      this.windowMessages = 0;
    }
    if (++this.windowMessages > this.limits.maxMessagesPerSecond) {
      if (this.windowMessages === this.limits.maxMessagesPerSecond + 1) {
        countRefusal('message-rate');
        this.server.log?.warn(
          { sessionId: this.session?.sessionId, client: this.client, limit: this.limits.maxMessagesPerSecond },
          'web client sends too many messages; closed',
        );
        this.refuseMessage('rate-limited', `more than ${this.limits.maxMessagesPerSecond} messages a second`);
        this.close(CLOSE.badMessage, 'message rate');
      }
      return;
    }
    const bytes = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
    if (bytes.length > this.limits.maxMessageBytes) {
      return this.refuseMessage(
        'bad-message',
        `message of ${bytes.length} bytes refused: the limit is ${this.limits.maxMessageBytes}`,
      );
    }
    if (!isBinary) {
      return this.refuseMessage(
        'bad-message',
        'text messages are not accepted: send the microphone as binary PCM16 frames',
      );
    }
    if (bytes.length % 2 !== 0) {
      return this.refuseMessage(
        'bad-audio',
        `odd length ${bytes.length}: audio must be PCM16 mono ${WEB_SAMPLE_RATE} Hz`,
      );
    }
    this.lastAudioAt = now;
    for (const frame of this.framer.pushBytes(bytes)) this.mic.push(frame);
    // Reported once, then at most every few seconds: a page sending too fast does so for every frame.
    if (this.mic.dropped > this.reportedDrops && now - this.reportedAt >= DROP_REPORT_EVERY_MS) {
      this.server.log?.warn(
        { sessionId: this.session?.sessionId, dropped: this.mic.dropped },
        'microphone audio arrives faster than real time; oldest dropped',
      );
      this.reportedDrops = this.mic.dropped;
      this.reportedAt = now;
    }
  }

  private sendRaw(data: string | Buffer, binary: boolean): void {
    const ws = this.ws;
    if (ws.readyState !== ws.OPEN) return;
    const size = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
    if (ws.bufferedAmount + size > this.limits.maxSendBufferBytes) {
      // The client stopped reading: holding more for it would grow the gateway without bound.
      countRefusal('not-reading');
      this.server.log?.warn(
        { sessionId: this.session?.sessionId, client: this.client, buffered: ws.bufferedAmount },
        'web client does not read what it is sent; cut off',
      );
      ws.terminate();
      return;
    }
    ws.send(data, { binary });
    this.server.notePeak(ws.bufferedAmount);
  }
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

  const http = createLimitedServer(limits, (req, res) => {
    if (!hostAllowed(req.headers.host, allowedHosts)) return end(res, 421, 'text/plain', 'unknown host\n');
    void serveStatic(req, res, staticDir);
  });
  // ws refuses (closes with 1009) anything far beyond our own limit before buffering it; we answer the rest.
  const wss = new WebSocketServer({ noServer: true, maxPayload: limits.maxMessageBytes * 4 });

  http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (path !== '/ws') return refuse(socket, 404, 'Not Found');
    // A page from another site (or a DNS-rebound name) must not use this agent and the user's microphone.
    if (!hostAllowed(req.headers.host, allowedHosts) || !sameOrigin(req)) {
      countRefusal('origin');
      return refuse(socket, 403, 'Forbidden');
    }
    const client = clientAddress(req, opts.trustProxy ?? false);
    const refused = clients.admit(client);
    if (refused) {
      countRefusal(refused);
      return refuse(socket, 429, 'Too Many Requests');
    }
    wss.handleUpgrade(req, socket, head, (ws) => onSocket(ws, client));
  });

  function onSocket(ws: WebSocket, client: string): void {
    const conn = new WebConnection(ws, client, limits, server);
    ws.on('error', (err) => log?.warn({ err: String(err) }, 'web socket error'));
    ws.on('pong', () => (conn.awaitingPong = false));
    if (live.size >= limits.maxSessions) {
      clients.release(client);
      countRefusal('sessions');
      conn.send({
        type: 'error',
        code: 'overloaded',
        message: `the gateway is at its limit of ${limits.maxSessions} sessions; try again later`,
      });
      conn.close(CLOSE.overloaded, 'too many sessions');
      return;
    }
    live.set(ws, conn);
    const stop = new AbortController();
    ws.on('message', (data: RawData, isBinary: boolean) => conn.onMessage(data, isBinary));

    const ended = new Promise<void>((resolve) => ws.once('close', () => resolve()));
    const run = (async () => {
      try {
        conn.session = await opts.factory((e) => conn.send(e));
      } catch (err) {
        if (err instanceof SessionRefusedError) {
          // The pipeline is full: the page says so and the caller tries again later (the refusal is logged).
          conn.send({
            type: 'error',
            code: 'busy',
            message: `The agent is busy (${err.reason}). Try again in a moment.`,
          });
          conn.close(CLOSE.overloaded, 'busy, try again');
          return;
        }
        log?.error({ err: String(err) }, 'web session failed to open');
        conn.send({ type: 'error', code: 'internal', message: 'the session could not be opened' });
        conn.close(CLOSE.internal, 'session failed');
        return;
      }
      if (ws.readyState !== ws.OPEN) return; // the page left while the session was opening
      conn.send({ type: 'ready', sessionId: conn.session.sessionId, sampleRate: WEB_SAMPLE_RATE, frameMs: FRAME_MS });
      const s = conn.session;
      await runClock(
        FRAME_MS,
        (i) => {
          const agent = s.tick(conn.mic.take() ?? micSilence(FRAME_SAMPLES, i + 1));
          if (agent) conn.sendAudio(agent);
          return true;
        },
        stop.signal,
      );
    })().catch((err: unknown) => {
      log?.error({ err: String(err) }, 'web session failed');
      conn.send({ type: 'error', code: 'internal', message: 'the session failed' });
      conn.close(CLOSE.internal, 'session failed');
    });

    const done = ended
      .then(async () => {
        stop.abort();
        await run;
        await conn.session?.close();
      })
      .catch((err: unknown) => log?.error({ err: String(err) }, 'web session did not close cleanly'))
      .finally(() => {
        live.delete(ws);
        clients.release(client);
        closing.delete(done);
      });
    closing.add(done);
  }

  // One timer for every socket: idle sockets are closed, sockets that stopped answering pings are cut off.
  const checkEveryMs = Math.max(20, Math.min(1000, limits.idleTimeoutMs / 4, limits.pingIntervalMs / 4));
  let lastPing = performance.now();
  const watchdog = setInterval(() => {
    const now = performance.now();
    const pingNow = now - lastPing >= limits.pingIntervalMs;
    if (pingNow) lastPing = now;
    for (const conn of live.values()) {
      if (conn.ws.readyState !== conn.ws.OPEN) continue;
      if (now - conn.lastAudioAt >= limits.idleTimeoutMs) {
        countRefusal('idle');
        log?.info({ sessionId: conn.session?.sessionId, client: conn.client }, 'web socket idle; closed');
        conn.send({ type: 'error', code: 'idle', message: `no microphone audio for ${limits.idleTimeoutMs / 1000} s` });
        conn.close(CLOSE.idle, 'idle');
      } else if (pingNow) {
        if (conn.awaitingPong) {
          countRefusal('no-pong');
          log?.info({ sessionId: conn.session?.sessionId, client: conn.client }, 'web socket did not answer a ping');
          conn.ws.terminate();
        } else {
          conn.awaitingPong = true;
          conn.ws.ping();
        }
      }
    }
  }, checkEveryMs);
  watchdog.unref();

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
      for (const ws of live.keys()) {
        ws.close(CLOSE.normal, 'gateway shutting down');
        // A page that does not answer the closing handshake is cut off.
        setTimeout(() => ws.terminate(), 1000).unref();
      }
      await Promise.all([...closing]);
      wss.close();
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
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
