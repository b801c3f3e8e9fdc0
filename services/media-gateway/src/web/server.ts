import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { SessionRefusedError } from '@va/actor';
import { ATTR, counter, METRIC, type Logger } from '@va/telemetry';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { FRAME_MS, micSilence, STAGE } from '../actor.js';
import { runClock } from '../wav-transport.js';
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

/** WebSocket close codes the page acts on. */
/** WebSocket close codes the page acts on; 1013 (Try Again Later): the gateway or the pipeline is full. */
export const CLOSE = { normal: 1000, badMessage: 1008, internal: 1011, overloaded: 1013 } as const;

export interface WebServerOptions {
  factory: SessionFactory;
  host?: string;
  /** 0: any free port. */
  port?: number;
  maxSessions?: number;
  /** Larger messages are refused with an error (a 20 ms frame is 640 bytes). */
  maxMessageBytes?: number;
  /** Microphone audio waiting for the clock beyond this is dropped, oldest first (bounds the added latency). */
  maxQueueMs?: number;
  /** Agent audio is not sent while this much is still unsent to a slow socket. */
  maxBufferedBytes?: number;
  staticDir?: string;
  log?: Logger;
}

export interface WebServer {
  readonly url: string;
  readonly port: number;
  /** Sockets with a session open or opening. */
  readonly sessions: number;
  close(): Promise<void>;
}

const FRAME_SAMPLES = (WEB_SAMPLE_RATE * FRAME_MS) / 1000;
const DROP_REPORT_EVERY_MS = 5000;

/** Cuts PCM16 little-endian byte chunks of any (even) size into 20 ms frames, keeping at most `maxFrames`. */
export class Reframer {
  private readonly frames: Int16Array[] = [];
  private partial = new Int16Array(FRAME_SAMPLES);
  private filled = 0;
  dropped = 0;

  constructor(private readonly maxFrames: number) {}

  push(bytes: Buffer): void {
    for (let i = 0; i + 1 < bytes.length; i += 2) {
      this.partial[this.filled++] = bytes.readInt16LE(i);
      if (this.filled === FRAME_SAMPLES) {
        this.frames.push(this.partial);
        this.partial = new Int16Array(FRAME_SAMPLES);
        this.filled = 0;
        if (this.frames.length > this.maxFrames) {
          this.frames.shift();
          this.dropped++;
          counter(METRIC.audioDropped).add(1, { [ATTR.stage]: STAGE, [ATTR.dropReason]: 'mic-queue-full' });
        }
      }
    }
  }

  /** The oldest whole frame, if there is one. */
  take(): Int16Array | undefined {
    return this.frames.shift();
  }

  get queued(): number {
    return this.frames.length;
  }
}

/**
 * The web transport: serves the talk page, and on `/ws` gives each socket its own session. Binary messages from
 * the page are the microphone (PCM16 mono 16 kHz, any size); a real-time clock feeds it to the session 20 ms at a
 * time (comfort noise when the page has sent nothing) and sends back, as binary, each agent frame to play. The
 * transcript, replies and latencies go to the page as JSON text. The socket closing closes the session.
 */
export async function startWebServer(opts: WebServerOptions): Promise<WebServer> {
  const maxSessions = opts.maxSessions ?? 8;
  const maxMessageBytes = opts.maxMessageBytes ?? 64 * 1024;
  const maxQueueFrames = Math.max(1, Math.round((opts.maxQueueMs ?? 500) / FRAME_MS));
  const maxBufferedBytes = opts.maxBufferedBytes ?? 256 * 1024;
  const staticDir = opts.staticDir ?? DEFAULT_STATIC_DIR;
  const log = opts.log;
  const live = new Set<WebSocket>();
  const closing = new Set<Promise<void>>();

  const http = createServer((req, res) => void serveStatic(req, res, staticDir));
  // ws refuses (closes with 1009) anything far beyond our own limit before buffering it; we answer the rest.
  const wss = new WebSocketServer({ noServer: true, maxPayload: maxMessageBytes * 4 });

  http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (path !== '/ws') return refuse(socket, 404, 'Not Found');
    // A page from another site must not use this agent (and the user's microphone) through the browser.
    const origin = req.headers.origin;
    if (origin !== undefined && !sameHost(origin, req.headers.host)) return refuse(socket, 403, 'Forbidden');
    wss.handleUpgrade(req, socket, head, (ws) => onSocket(ws));
  });

  function onSocket(ws: WebSocket): void {
    const send = (e: PageEvent) => {
      if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(e));
    };
    const fail = (code: string, message: string) => send({ type: 'error', code, message });
    ws.on('error', (err) => log?.warn({ err: String(err) }, 'web socket error'));
    if (live.size >= maxSessions) {
      fail('overloaded', `the gateway is at its limit of ${maxSessions} sessions; try again later`);
      ws.close(CLOSE.overloaded, 'too many sessions');
      return;
    }
    live.add(ws);
    const mic = new Reframer(maxQueueFrames);
    const stop = new AbortController();
    let session: WebSession | undefined;
    let reportedDrops = 0;
    let reportedAt = -Infinity;

    ws.on('message', (data: RawData, isBinary: boolean) => {
      const bytes = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
      if (bytes.length > maxMessageBytes) {
        return fail('bad-message', `message of ${bytes.length} bytes refused: the limit is ${maxMessageBytes}`);
      }
      if (!isBinary) {
        return fail('bad-message', 'text messages are not accepted: send the microphone as binary PCM16 frames');
      }
      if (bytes.length % 2 !== 0) {
        return fail('bad-audio', `odd length ${bytes.length}: audio must be PCM16 mono ${WEB_SAMPLE_RATE} Hz`);
      }
      mic.push(bytes);
      // Reported once, then at most every few seconds: a page sending too fast does so for every frame.
      const now = Date.now();
      if (mic.dropped > reportedDrops && now - reportedAt >= DROP_REPORT_EVERY_MS) {
        log?.warn(
          { sessionId: session?.sessionId, dropped: mic.dropped },
          'microphone audio arrives faster than real time; oldest dropped',
        );
        reportedDrops = mic.dropped;
        reportedAt = now;
      }
    });

    const ended = new Promise<void>((resolve) => ws.once('close', () => resolve()));
    const run = (async () => {
      try {
        session = await opts.factory((e) => send(e));
      } catch (err) {
        if (err instanceof SessionRefusedError) {
          // The pipeline is full: the page says so and the caller tries again later (the refusal is logged).
          fail('busy', `The agent is busy (${err.reason}). Try again in a moment.`);
          ws.close(CLOSE.overloaded, 'busy, try again');
          return;
        }
        log?.error({ err: String(err) }, 'web session failed to open');
        fail('internal', 'the session could not be opened');
        ws.close(CLOSE.internal, 'session failed');
        return;
      }
      if (ws.readyState !== ws.OPEN) return; // the page left while the session was opening
      send({ type: 'ready', sessionId: session.sessionId, sampleRate: WEB_SAMPLE_RATE, frameMs: FRAME_MS });
      const s = session;
      await runClock(
        FRAME_MS,
        (i) => {
          const agent = s.tick(mic.take() ?? micSilence(FRAME_SAMPLES, i + 1));
          if (agent && ws.readyState === ws.OPEN && ws.bufferedAmount <= maxBufferedBytes) {
            ws.send(Buffer.from(agent.buffer, agent.byteOffset, agent.byteLength), { binary: true });
          }
          return true;
        },
        stop.signal,
      );
    })().catch((err: unknown) => {
      log?.error({ err: String(err) }, 'web session failed');
      fail('internal', 'the session failed');
      ws.close(CLOSE.internal, 'session failed');
    });

    const done = ended
      .then(async () => {
        stop.abort();
        await run;
        await session?.close();
      })
      .catch((err: unknown) => log?.error({ err: String(err) }, 'web session did not close cleanly'))
      .finally(() => {
        live.delete(ws);
        closing.delete(done);
      });
    closing.add(done);
  }

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
    async close() {
      for (const ws of live) {
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

function sameHost(origin: string, host: string | undefined): boolean {
  try {
    return new URL(origin).host === host;
  } catch {
    return false;
  }
}
