import WebSocket from 'ws';
import { kindOfStatus } from '../errors.js';
import type { ElevenLabsErrors } from './elevenlabs-errors.js';

export interface Conn {
  ws: WebSocket;
  /** Resolves once open; rejects with a ProviderError. */
  ready: Promise<void>;
}

export interface SocketOptions {
  apiKey: string;
  /** WebSocket handshake limit, ms. */
  connectTimeoutMs: number;
  errors: ElevenLabsErrors;
}

/** Opens a `stream-input` socket; a refused handshake rejects `ready` with the HTTP status and body. */
export function openSocket(url: string, opts: SocketOptions): Conn {
  const { errors } = opts;
  const ws = new WebSocket(url, {
    headers: { 'xi-api-key': opts.apiKey },
    handshakeTimeout: opts.connectTimeoutMs,
    perMessageDeflate: false,
  });
  ws.on('error', () => undefined); // reported through `ready` or the call's close handler
  const ready = new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (req, res) => {
      const status = res.statusCode ?? 0;
      let body = '';
      res.on('data', (d: Buffer) => (body = (body + d.toString('utf8')).slice(0, 500)));
      const done = () => {
        reject(
          errors.make(kindOfStatus(status), `handshake refused: HTTP ${status} ${body.trim()}`, undefined, status),
        );
        req.destroy();
        ws.terminate();
      };
      res.once('end', done);
      setTimeout(done, 500).unref();
    });
    ws.once('error', (err) => {
      const timeout = /timed out/i.test(err.message);
      reject(errors.make(timeout ? 'timeout' : 'connection', `cannot connect: ${err.message}`, err));
    });
    ws.once('close', (code) => reject(errors.make('connection', `closed before it opened (${code})`)));
  });
  ready.catch(() => undefined);
  return { ws, ready };
}

interface Warm {
  conn: Conn;
  timer: NodeJS.Timeout;
}

/** At most one socket opened ahead for the next reply; closed when nobody takes it within the idle time. */
export class WarmSocket {
  #warm: Warm | undefined;

  /** Opens one unless one is waiting already; resolves once it is open or has failed (never rejects). */
  async prewarm(open: () => Conn, idleMs: number): Promise<void> {
    const existing = this.#warm;
    if (existing) return existing.conn.ready.catch(() => undefined);
    const conn = open();
    const warm: Warm = {
      conn,
      timer: setTimeout(() => {
        if (this.#warm !== warm) return;
        this.#warm = undefined;
        conn.ws.close(1000);
      }, idleMs),
    };
    warm.timer.unref();
    this.#warm = warm;
    conn.ws.once('close', () => {
      if (this.#warm !== warm) return;
      this.#warm = undefined;
      clearTimeout(warm.timer);
    });
    await conn.ready.catch(() => undefined);
  }

  /** The waiting socket, if it is open or still opening. */
  take(): Conn | undefined {
    const warm = this.#warm;
    this.#warm = undefined;
    if (!warm) return undefined;
    clearTimeout(warm.timer);
    const state = warm.conn.ws.readyState;
    return state === WebSocket.OPEN || state === WebSocket.CONNECTING ? warm.conn : undefined;
  }

  /** Closes the waiting socket, if any. */
  close(): void {
    const warm = this.#warm;
    this.#warm = undefined;
    if (!warm) return;
    clearTimeout(warm.timer);
    warm.conn.ws.terminate();
  }
}
