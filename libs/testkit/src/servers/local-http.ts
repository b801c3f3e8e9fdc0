import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

/** What the provider stand-ins (Deepgram, ElevenLabs, OpenAI TTS) share: the HTTP server and its small helpers. */

export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => Promise<void>;

/**
 * An HTTP server on 127.0.0.1 at a port the OS picks. It numbers and tracks its TCP connections (so close() can cut
 * them), runs timers that close() clears, and can close itself after a lifetime.
 */
export class LocalHttpServer {
  readonly http: Server;
  private readonly sockets = new Set<Socket>();
  private readonly socketNumbers = new WeakMap<Socket, number>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private accepted = 0;
  private port = 0;
  private lifetime: NodeJS.Timeout | undefined;
  private closed: Promise<void> | undefined;

  constructor(handle: RequestHandler) {
    // A handler that throws (a body too large, say) just drops its response.
    this.http = createServer((req, res) => {
      handle(req, res).catch(() => res.destroy());
    });
    this.http.on('connection', (socket: Socket) => {
      this.socketNumbers.set(socket, ++this.accepted);
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(0, '127.0.0.1', () => {
        this.http.off('error', reject);
        resolve();
      });
    });
    const address = this.http.address();
    this.port = typeof address === 'object' && address ? address.port : 0;
  }

  /** `http://127.0.0.1:<port>`, once listening. */
  get origin(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Which TCP connection a request came on: 1-based, in accept order (0 if not seen). */
  connectionNumber(socket: Socket): number {
    return this.socketNumbers.get(socket) ?? 0;
  }

  get closing(): boolean {
    return this.closed !== undefined;
  }

  /** A timer that close() cancels. */
  later(ms: number, fn: () => void): NodeJS.Timeout {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      fn();
    }, ms);
    this.timers.add(timer);
    return timer;
  }

  /** Closes the server through `close` after `ms`, without keeping the process alive for it. */
  closeAfter(ms: number, close: () => Promise<void>): void {
    this.lifetime = setTimeout(() => void close(), ms);
    this.lifetime.unref();
  }

  /**
   * Cancels the timers, runs `teardown` (ends what rides on the connections: WebSockets, stalled responses), stops
   * listening and cuts every connection. Calling it again returns the same promise.
   */
  close(teardown: () => void | Promise<void> = () => undefined): Promise<void> {
    this.closed ??= (async () => {
      clearTimeout(this.lifetime);
      for (const timer of this.timers) clearTimeout(timer);
      this.timers.clear();
      await teardown();
      await new Promise<void>((resolve) => {
        this.http.close(() => resolve());
        for (const socket of this.sockets) socket.destroy();
      });
    })();
    return this.closed;
  }
}

/** The key check every stand-in makes; the `rejectAuth` fault refuses every key. */
export function refusesKey(faults: { rejectAuth?: boolean }, apiKey: string, given: unknown): boolean {
  return faults.rejectAuth === true || given !== apiKey;
}

/** The credential of an `Authorization: <scheme> <credential>` header, if it has that scheme. */
export function authorization(req: IncomingMessage, scheme: string): string | undefined {
  const header = req.headers.authorization;
  return header?.startsWith(`${scheme} `) ? header.slice(scheme.length + 1) : undefined;
}

/** Answers a WebSocket upgrade request with a plain HTTP error and a JSON body, and ends the socket. */
export function refuseUpgrade(socket: Duplex, status: number, body: unknown, headers: Record<string, string> = {}) {
  const json = JSON.stringify(body);
  const fields = {
    'content-type': 'application/json',
    ...headers,
    'content-length': String(Buffer.byteLength(json)),
    connection: 'close',
  };
  const head = Object.entries(fields).map(([name, value]) => `${name}: ${value}\r\n`);
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n${head.join('')}\r\n${json}`);
}

export function sendJson(res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}) {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(value));
}

/** The request body as text; throws past 100 kB (a test server has no use for more). */
export async function readBody(req: IncomingMessage): Promise<string> {
  let body = '';
  for await (const chunk of req) {
    body += String(chunk);
    if (body.length > 100_000) throw new Error('body too large');
  }
  return body;
}

export interface StepWrites {
  /** Bytes per write. */
  step: number;
  /** Pause after each write. */
  delayMs: number;
  /** Asked before each write (with the writes and bytes so far): true cuts the connection there (a drop fault). */
  cutBefore?: (writes: number, bytesSent: number) => boolean;
  onWrite?: (bytes: number) => void;
}

/**
 * Streams `bytes` as the body of `res` in `step`-sized writes, `delayMs` apart: 'written' once all are written
 * ('gone' if the client went away on the way, 'cut' if `cutBefore` cut the connection). The caller ends `res`.
 */
export async function writeInSteps(
  res: ServerResponse,
  bytes: Uint8Array,
  { step, delayMs, cutBefore, onWrite }: StepWrites,
): Promise<'written' | 'gone' | 'cut'> {
  let writes = 0;
  let bytesSent = 0;
  for (let at = 0; at < bytes.length; at += step) {
    if (res.destroyed) return 'gone';
    if (cutBefore?.(writes, bytesSent)) {
      res.socket?.destroy();
      return 'cut';
    }
    const piece = bytes.subarray(at, Math.min(bytes.length, at + step));
    res.write(piece);
    writes++;
    bytesSent += piece.length;
    onWrite?.(piece.length);
    await sleep(delayMs);
  }
  return res.destroyed ? 'gone' : 'written';
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
