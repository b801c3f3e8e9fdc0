import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { StreamInputSession, type StreamInputContext } from './elevenlabs-stream-input.js';
import { LocalHttpServer, readBody, refuseUpgrade, refusesKey, sendJson, writeInSteps } from './local-http.js';
import { pcmBytes, toneFor } from './tone.js';

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
const INVALID_KEY = { detail: { status: 'invalid_api_key', message: 'Invalid API key' } };

export async function startElevenLabsServer(opts: ElevenLabsServerOptions = {}): Promise<ElevenLabsServer> {
  const server = new ElevenLabsTestServer(opts);
  await server.listen();
  return server;
}

class ElevenLabsTestServer implements ElevenLabsServer {
  readonly apiKey: string;
  readonly faults: ElevenLabsServerFaults;
  readonly connections: ElevenLabsConnection[] = [];
  readonly stats: ElevenLabsServerStats = {
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
  private readonly maxConnections: number;
  private readonly lifetimeMs: number;
  private readonly session: StreamInputContext;
  private readonly host = new LocalHttpServer((req, res) => this.handleHttp(req, res));
  private readonly wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });

  constructor(opts: ElevenLabsServerOptions) {
    this.apiKey = opts.apiKey ?? 'xi-test-0123456789abcdef';
    this.faults = { ...opts.faults };
    this.maxConnections = opts.maxConnections ?? 200;
    this.lifetimeMs = opts.lifetimeMs ?? 60_000;
    this.session = {
      apiKey: this.apiKey,
      faults: this.faults,
      stats: this.stats,
      msPerChar: opts.msPerChar ?? 60,
      charsPerMessage: opts.charsPerMessage ?? 8,
      delayMs: opts.messageDelayMs ?? 5,
      alignment: opts.alignment ?? true,
      trimGenerations: opts.trimGenerations ?? false,
      inactivityTimeoutMs: opts.inactivityTimeoutMs ?? 20_000,
      later: (ms, fn) => this.host.later(ms, fn),
    };
    this.host.http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) =>
      this.upgrade(req, socket, head),
    );
  }

  get url(): string {
    return this.host.origin;
  }

  async listen(): Promise<void> {
    await this.host.listen();
    this.host.closeAfter(this.lifetimeMs, () => this.close());
  }

  close(): Promise<void> {
    return this.host.close(() => {
      for (const ws of this.wss.clients) ws.terminate();
      this.wss.close();
    });
  }

  private refuse(socket: Duplex, status: number, body: unknown): void {
    this.stats.rejected++;
    refuseUpgrade(socket, status, body);
  }

  /** `GET /v1/text-to-speech/:voice/stream-input`: checks path, capacity, key, faults and format, then a session. */
  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const m = STREAM_INPUT.exec(url.pathname);
    if (!m) return this.refuse(socket, 404, { detail: 'Not Found' });
    if (this.stats.open >= this.maxConnections) return this.refuse(socket, 429, { detail: 'too many connections' });
    const header = req.headers['xi-api-key'];
    // Without the header the key may come in the first message.
    if (refusesKey(this.faults, this.apiKey, header ?? this.apiKey)) return this.refuse(socket, 401, INVALID_KEY);
    if (this.faults.serverError) return this.refuse(socket, 500, { detail: 'internal error' });
    const format = url.searchParams.get('output_format') ?? 'mp3_44100';
    const pcm = /^pcm_(\d+)$/.exec(format);
    if (!pcm) return this.refuse(socket, 400, { detail: `this server only makes pcm, not ${format}` });
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
      this.wss.handleUpgrade(req, socket, head, (ws) => this.open(ws, conn, Number(pcm[1])));
    };
    if (this.faults.handshakeDelayMs) this.host.later(this.faults.handshakeDelayMs, accept);
    else accept();
  }

  private open(ws: WebSocket, conn: ElevenLabsConnection, rate: number): void {
    this.stats.connections++;
    this.stats.open++;
    conn.openedAt = performance.now();
    this.connections.push(conn);
    new StreamInputSession(ws, conn, rate, this.session);
  }

  /** The HTTP API: `GET /v1/voices/:voice` and `POST /v1/text-to-speech/:voice/stream`. */
  private async handleHttp(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const body = await readBody(req);
    if (refusesKey(this.faults, this.apiKey, req.headers['xi-api-key'])) return sendJson(res, 401, INVALID_KEY);
    const voice = VOICE.exec(url.pathname);
    if (req.method === 'GET' && voice) {
      this.stats.voiceRequests++;
      return sendJson(res, 200, { voice_id: decodeURIComponent(voice[1]!), name: 'Test voice', category: 'premade' });
    }
    if (req.method !== 'POST' || !HTTP_STREAM.test(url.pathname)) return sendJson(res, 404, { detail: 'Not Found' });
    this.stats.httpRequests++;
    if (this.faults.serverError) return sendJson(res, 500, { detail: 'internal error' });
    const format = url.searchParams.get('output_format') ?? 'mp3_44100_128';
    const pcm = /^pcm_(\d+)$/.exec(format);
    if (!pcm) return sendJson(res, 400, { detail: `this server only makes pcm, not ${format}` });
    let parsed: { text?: unknown };
    try {
      parsed = JSON.parse(body) as { text?: unknown };
    } catch {
      return sendJson(res, 400, { detail: 'invalid JSON' });
    }
    if (typeof parsed.text !== 'string' || parsed.text === '')
      return sendJson(res, 422, { detail: 'text is required' });
    return this.streamHttp(res, parsed.text, Number(pcm[1]));
  }

  /** Chunked raw PCM of `text`, with the stall and drop faults. */
  private async streamHttp(res: ServerResponse, text: string, rate: number): Promise<void> {
    const { msPerChar, charsPerMessage, delayMs } = this.session;
    this.stats.httpActive++;
    let completed = false;
    res.on('close', () => {
      this.stats.httpActive--;
      if (!completed) this.stats.httpDisconnects++;
    });
    if (this.faults.stallBeforeFirstByte) return; // never answered; the client gives up
    res.writeHead(200, { 'content-type': 'audio/pcm' });
    const outcome = await writeInSteps(res, pcmBytes(toneFor(text, msPerChar, rate)), {
      step: Math.round((charsPerMessage * msPerChar * rate) / 1000) * 2 + 1, // odd: split samples
      delayMs,
      cutBefore: (writes) => this.faults.dropAfterMessages !== undefined && writes >= this.faults.dropAfterMessages,
    });
    if (outcome === 'cut') this.stats.drops++;
    if (outcome !== 'written') return;
    completed = true;
    res.end();
  }
}
