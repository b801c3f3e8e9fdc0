import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { toneFor } from './openai-tts-server.js';

/**
 * A local stand-in for ElevenLabs TTS (docs/provider-protocols.md §2), for tests only. It speaks the real wire
 * protocols but does not speak: the audio is a tone, one Hann-shaped burst per letter or digit and a gap for
 * anything else (like `FakeTTS`), `msPerChar` per character, so its length follows the text.
 *
 * - `stream-input` WebSocket (`/v1/text-to-speech/:voice/stream-input`): query `model_id`, `output_format=pcm_<rate>`
 *   (only pcm), `sync_alignment`, `inactivity_timeout`; auth by the `xi-api-key` header, or — without the
 *   header — `xi-api-key`/`xi_api_key` in the first message, which must be `{"text":" ",…}`. Text is buffered until
 *   `flush`, `try_trigger_generation` (50+ characters), the chunk length schedule, or `{"text":""}`; each
 *   generation goes out as `{"audio": base64 pcm, "isFinal": null, "normalizedAlignment": {chars,
 *   charStartTimesMs, charDurationsMs}, "alignment": {…}}` messages of `charsPerMessage` characters (times relative
 *   to the message), and after `{"text":""}` the rest, then `{"isFinal": true}` and close 1000. Idle input → the
 *   provider's `input_timeout_exceeded` error message and close 1008.
 * - HTTP (the SDK's `textToSpeech.stream`): `POST /v1/text-to-speech/:voice/stream?output_format=pcm_<rate>` with
 *   `{"text", "model_id"}` → chunked raw PCM; `GET /v1/voices/:voice` → a voice.
 *
 * Listens on 127.0.0.1 only, refuses connections beyond `maxConnections`, closes itself after `lifetimeMs`.
 */
export interface ElevenLabsServerOptions {
  /** The key the server accepts. Default 'xi-test-0123456789abcdef'. */
  apiKey?: string;
  /** Audio per character. Default 60 ms. */
  msPerChar?: number;
  /** Characters per audio message. Default 8 (480 ms of audio). */
  charsPerMessage?: number;
  /** Pause between audio messages (and HTTP body writes). Default 5 ms. */
  messageDelayMs?: number;
  /** Send alignment with the audio. Default true. */
  alignment?: boolean;
  /** Speak (and align) each generation without its leading and trailing whitespace, as a provider may. Default false. */
  trimGenerations?: boolean;
  /** No client message for this long → input_timeout_exceeded (the query's `inactivity_timeout` wins). Default 20 s. */
  inactivityTimeoutMs?: number;
  faults?: ElevenLabsServerFaults;
  /** Default 60 s. */
  lifetimeMs?: number;
  /** Default 200. */
  maxConnections?: number;
}

export interface ElevenLabsServerFaults {
  /** The upgrade is answered this much later (a slow TLS/handshake path). */
  handshakeDelayMs?: number;
  /** Every upgrade and request gets 401, whatever the key. */
  rejectAuth?: boolean;
  /** Every upgrade and request gets 500. */
  serverError?: boolean;
  /** Text is taken but no audio ever comes. */
  stallBeforeFirstByte?: boolean;
  /** The connection is cut (TCP, no close frame) after this many audio messages or body writes. */
  dropAfterMessages?: number;
}

/** One WebSocket as the server saw it. */
export interface ElevenLabsConnection {
  voiceId: string;
  query: URLSearchParams;
  /** How the key came. */
  auth: 'header' | 'message' | 'none';
  /** Client messages, parsed, in order. */
  messages: Record<string, unknown>[];
  /** Texts generated, in order. */
  generations: string[];
  audioMessages: number;
  /** performance.now() at upgrade request, socket open, first client message. */
  requestedAt: number;
  openedAt?: number;
  firstMessageAt?: number;
  /** Ended by the client before isFinal. */
  disconnected: boolean;
  final: boolean;
  closed: boolean;
}

export interface ElevenLabsServerStats {
  /** Upgrades accepted / refused; sockets open now. */
  connections: number;
  rejected: number;
  open: number;
  /** Connections that received their first message. */
  sessions: number;
  finals: number;
  /** Streams the client ended before isFinal (abort). */
  disconnects: number;
  inactivityCloses: number;
  drops: number;
  httpRequests: number;
  httpActive: number;
  httpDisconnects: number;
  voiceRequests: number;
}

export interface ElevenLabsServer {
  /** Base URL for the adapter / SDK `baseUrl` (http:, the adapter turns it into ws:). */
  readonly url: string;
  readonly apiKey: string;
  readonly faults: ElevenLabsServerFaults;
  readonly stats: ElevenLabsServerStats;
  readonly connections: ElevenLabsConnection[];
  close(): Promise<void>;
}

const STREAM_INPUT = /^\/v1\/text-to-speech\/([^/]+)\/stream-input$/;
const HTTP_STREAM = /^\/v1\/text-to-speech\/([^/]+)\/stream$/;
const VOICE = /^\/v1\/voices\/([^/]+)$/;
const SCHEDULE = [120, 160, 250, 290];

export async function startElevenLabsServer(opts: ElevenLabsServerOptions = {}): Promise<ElevenLabsServer> {
  const apiKey = opts.apiKey ?? 'xi-test-0123456789abcdef';
  const msPerChar = opts.msPerChar ?? 60;
  const charsPerMessage = opts.charsPerMessage ?? 8;
  const delayMs = opts.messageDelayMs ?? 5;
  const maxConnections = opts.maxConnections ?? 200;
  const faults: ElevenLabsServerFaults = { ...opts.faults };
  const connections: ElevenLabsConnection[] = [];
  const stats: ElevenLabsServerStats = {
    connections: 0,
    rejected: 0,
    open: 0,
    sessions: 0,
    finals: 0,
    disconnects: 0,
    inactivityCloses: 0,
    drops: 0,
    httpRequests: 0,
    httpActive: 0,
    httpDisconnects: 0,
    voiceRequests: 0,
  };
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const later = (ms: number, fn: () => void) => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
    return t;
  };

  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  const http: Server = createServer((req, res) => {
    handleHttp(req, res).catch(() => res.destroy());
  });
  http.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });

  function refuse(socket: Duplex, status: number, text: string, body: unknown) {
    stats.rejected++;
    const json = JSON.stringify(body);
    socket.end(
      `HTTP/1.1 ${status} ${text}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(json)}\r\nConnection: close\r\n\r\n${json}`,
    );
  }

  http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const m = STREAM_INPUT.exec(url.pathname);
    if (!m) return refuse(socket, 404, 'Not Found', { detail: 'Not Found' });
    if (stats.open >= maxConnections)
      return refuse(socket, 429, 'Too Many Requests', { detail: 'too many connections' });
    const header = req.headers['xi-api-key'];
    if (faults.rejectAuth || (header !== undefined && header !== apiKey)) {
      return refuse(socket, 401, 'Unauthorized', { detail: { status: 'invalid_api_key', message: 'Invalid API key' } });
    }
    if (faults.serverError) return refuse(socket, 500, 'Internal Server Error', { detail: 'internal error' });
    const format = url.searchParams.get('output_format') ?? 'mp3_44100';
    const pcm = /^pcm_(\d+)$/.exec(format);
    if (!pcm) return refuse(socket, 400, 'Bad Request', { detail: `this server only makes pcm, not ${format}` });
    const conn: ElevenLabsConnection = {
      voiceId: decodeURIComponent(m[1]!),
      query: url.searchParams,
      auth: header === undefined ? 'none' : 'header',
      messages: [],
      generations: [],
      audioMessages: 0,
      requestedAt: performance.now(),
      disconnected: false,
      final: false,
      closed: false,
    };
    const accept = () => {
      if (socket.destroyed) return;
      wss.handleUpgrade(req, socket, head, (ws) => session(ws, conn, Number(pcm[1])));
    };
    if (faults.handshakeDelayMs) later(faults.handshakeDelayMs, accept);
    else accept();
  });

  function session(ws: WebSocket, conn: ElevenLabsConnection, rate: number) {
    stats.connections++;
    stats.open++;
    conn.openedAt = performance.now();
    connections.push(conn);
    const alignment = opts.alignment ?? true;
    const idleMs = conn.query.has('inactivity_timeout')
      ? Number(conn.query.get('inactivity_timeout')) * 1000
      : (opts.inactivityTimeoutMs ?? 20_000);
    let buffer = '';
    let scheduleAt = 0;
    let outgoing: Promise<void> = Promise.resolve(); // generations go out one after another
    let idle: NodeJS.Timeout | undefined;
    let ended = false; // the input ended, or the server closed with an error
    let errorClosed = false;

    const armIdle = () => {
      if (idle) clearTimeout(idle);
      idle = later(idleMs, () => {
        if (ended) return;
        stats.inactivityCloses++;
        failWith(
          'input_timeout_exceeded',
          `Have not received a new text input within the timeout of ${(idleMs / 1000).toFixed(1)} seconds. Streaming input terminated. Please make sure to either feed the input in the timely manner, or to send the end of input text (empty string "") when done.`,
        );
      });
    };
    const failWith = (error: string, message: string) => {
      ended = true;
      errorClosed = true;
      if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ message, error, code: 1008 }));
      ws.close(1008, error);
    };
    const open = () => ws.readyState === ws.OPEN && !conn.closed;

    const generate = (buffered: string) => {
      const text = opts.trimGenerations ? buffered.trim() : buffered;
      if (text === '') return;
      conn.generations.push(text);
      const chars = Array.from(text);
      outgoing = outgoing.then(async () => {
        if (faults.stallBeforeFirstByte) return new Promise<void>(() => undefined); // never
        for (let i = 0; i < chars.length; i += charsPerMessage) {
          if (!open()) return;
          if (faults.dropAfterMessages !== undefined && conn.audioMessages >= faults.dropAfterMessages) {
            stats.drops++;
            ws.terminate();
            return;
          }
          const piece = chars.slice(i, i + charsPerMessage);
          const pcm = toneFor(piece.join(''), msPerChar, rate);
          const timing = {
            chars: piece,
            charStartTimesMs: piece.map((_, k) => k * msPerChar),
            charDurationsMs: piece.map(() => msPerChar),
          };
          const msg = {
            audio: Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength).toString('base64'),
            isFinal: null,
            normalizedAlignment: alignment ? timing : null,
            alignment: alignment ? timing : null,
          };
          ws.send(JSON.stringify(msg));
          conn.audioMessages++;
          await sleep(delayMs);
        }
      });
    };

    armIdle();
    ws.on('message', (data: RawData, isBinary: boolean) => {
      if (ended) return;
      armIdle();
      let msg: Record<string, unknown>;
      try {
        if (isBinary) throw new Error('binary');
        msg = JSON.parse(data.toString()) as Record<string, unknown>;
        if (typeof msg.text !== 'string') throw new Error('no text');
      } catch {
        return failWith(
          'invalid_input_message',
          'Could not parse input message, please make sure it is valid JSON with a "text" field.',
        );
      }
      conn.messages.push(msg);
      const text = msg.text as string;
      if (conn.messages.length === 1) {
        conn.firstMessageAt = performance.now();
        stats.sessions++;
        if (conn.auth === 'none') {
          const key = msg['xi-api-key'] ?? msg.xi_api_key;
          if (key !== apiKey) return failWith('auth_error', 'Invalid API key');
          conn.auth = 'message';
        }
        if (text !== ' ') return failWith('invalid_input_message', 'The first message must have text " ".');
        return;
      }
      if (text === '') {
        generate(buffer);
        buffer = '';
        ended = true;
        void outgoing.then(() => {
          if (!open()) return;
          ws.send(JSON.stringify({ isFinal: true }));
          conn.final = true;
          stats.finals++;
          ws.close(1000);
        });
        return;
      }
      buffer += text;
      if (msg.flush === true || (msg.try_trigger_generation === true && buffer.length >= 50)) {
        generate(buffer);
        buffer = '';
        return;
      }
      const schedule = (msg.generation_config as { chunk_length_schedule?: number[] } | undefined)
        ?.chunk_length_schedule;
      const threshold = (schedule ?? SCHEDULE)[Math.min(scheduleAt, (schedule ?? SCHEDULE).length - 1)]!;
      const space = buffer.lastIndexOf(' ');
      if (buffer.length >= threshold && space > 0) {
        scheduleAt++;
        generate(buffer.slice(0, space + 1));
        buffer = buffer.slice(space + 1);
      }
    });
    ws.on('close', () => {
      conn.closed = true;
      stats.open--;
      if (idle) clearTimeout(idle);
      if (!conn.final && !errorClosed) {
        conn.disconnected = true;
        stats.disconnects++;
      }
    });
    ws.on('error', () => undefined);
  }

  async function handleHttp(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    let body = '';
    for await (const chunk of req) {
      body += String(chunk);
      if (body.length > 100_000) throw new Error('body too large');
    }
    const json = (status: number, value: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(value));
    };
    if (faults.rejectAuth || req.headers['xi-api-key'] !== apiKey) {
      return json(401, { detail: { status: 'invalid_api_key', message: 'Invalid API key' } });
    }
    const voice = VOICE.exec(url.pathname);
    if (req.method === 'GET' && voice) {
      stats.voiceRequests++;
      return json(200, { voice_id: decodeURIComponent(voice[1]!), name: 'Test voice', category: 'premade' });
    }
    const stream = HTTP_STREAM.exec(url.pathname);
    if (req.method !== 'POST' || !stream) return json(404, { detail: 'Not Found' });
    stats.httpRequests++;
    if (faults.serverError) return json(500, { detail: 'internal error' });
    const format = url.searchParams.get('output_format') ?? 'mp3_44100_128';
    const pcm = /^pcm_(\d+)$/.exec(format);
    if (!pcm) return json(400, { detail: `this server only makes pcm, not ${format}` });
    let parsed: { text?: unknown };
    try {
      parsed = JSON.parse(body) as { text?: unknown };
    } catch {
      return json(400, { detail: 'invalid JSON' });
    }
    if (typeof parsed.text !== 'string' || parsed.text === '') return json(422, { detail: 'text is required' });
    stats.httpActive++;
    let completed = false;
    res.on('close', () => {
      stats.httpActive--;
      if (!completed) stats.httpDisconnects++;
    });
    if (faults.stallBeforeFirstByte) return; // never answered; the client gives up
    res.writeHead(200, { 'content-type': 'audio/pcm' });
    const samples = toneFor(parsed.text, msPerChar, Number(pcm[1]));
    const bytes = new Uint8Array(samples.buffer, samples.byteOffset, samples.byteLength);
    const step = Math.round((charsPerMessage * msPerChar * Number(pcm[1])) / 1000) * 2 + 1; // odd: split samples
    let writes = 0;
    for (let at = 0; at < bytes.length; at += step) {
      if (res.destroyed) return;
      if (faults.dropAfterMessages !== undefined && writes >= faults.dropAfterMessages) {
        stats.drops++;
        res.socket?.destroy();
        return;
      }
      res.write(bytes.subarray(at, Math.min(bytes.length, at + step)));
      writes++;
      await sleep(delayMs);
    }
    completed = true;
    res.end();
  }

  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const { port } = http.address() as { port: number };

  let closed: Promise<void> | undefined;
  const close = () => {
    closed ??= new Promise<void>((resolve) => {
      clearTimeout(lifetime);
      for (const t of timers) clearTimeout(t);
      for (const ws of wss.clients) ws.terminate();
      wss.close();
      http.close(() => resolve());
      for (const s of sockets) s.destroy();
    });
    return closed;
  };
  const lifetime = setTimeout(() => void close(), opts.lifetimeMs ?? 60_000);
  lifetime.unref();

  return { url: `http://127.0.0.1:${port}`, apiKey, faults, stats, connections, close };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
