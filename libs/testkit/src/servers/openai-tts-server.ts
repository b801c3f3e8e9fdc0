import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/**
 * A local stand-in for OpenAI's speech endpoint (`POST /v1/audio/speech`, docs/provider-protocols.md §3), for
 * tests only. It speaks the real wire protocol — `Authorization: Bearer <key>`, a JSON body with `model`, `voice`,
 * `input`, `response_format`, raw 24 kHz s16le mono PCM streamed back in chunks, errors as
 * `{"error":{message,type,param,code}}` with `x-should-retry: false` — but it does not speak: the audio is a tone,
 * one Hann-shaped burst per letter or digit and a gap for anything else (like `FakeTTS`), so its length follows
 * the text. `GET /v1/models` answers too (a prewarm's cheap request). Listens on 127.0.0.1 only, serves a bounded
 * number of requests and closes itself after `lifetimeMs`.
 */
export interface OpenAITtsServerOptions {
  /** The key the server accepts. Default 'sk-test-0123456789abcdef'. */
  apiKey?: string;
  /** Audio per character of input. Default 60 ms. */
  msPerChar?: number;
  /** Bytes per body write. Default 4800 (100 ms at 24 kHz). */
  chunkBytes?: number;
  /** Pause between body writes. Default 5 ms. */
  chunkDelayMs?: number;
  faults?: OpenAITtsServerFaults;
  /** The server closes itself after this long. Default 60 s. */
  lifetimeMs?: number;
  /** Requests beyond this many are refused with 429. Default 500. */
  maxRequests?: number;
}

export interface OpenAITtsServerFaults {
  /** Every request gets 401, whatever the key. */
  rejectAuth?: boolean;
  /** Every speech request gets a 500. */
  serverError?: boolean;
  /** Speech requests get no answer at all (no headers, no bytes) until the client gives up. */
  stallBeforeFirstByte?: boolean;
  /** Each speech response is cut (socket destroyed) after this many body bytes. */
  dropAfterBytes?: number;
  /** Headers are sent this much later (a slow first byte). */
  firstByteDelayMs?: number;
}

export interface OpenAITtsRequest {
  model: string;
  voice: string;
  input: string;
  responseFormat: string;
  /** Which TCP connection carried it (1-based, in accept order). */
  connection: number;
  /** Body bytes sent; whether the client went away before the end. */
  bytesSent: number;
  disconnected: boolean;
  completed: boolean;
}

export interface OpenAITtsServer {
  /** Base URL for the SDK's `baseURL` (…/v1). */
  readonly url: string;
  readonly apiKey: string;
  readonly faults: OpenAITtsServerFaults;
  readonly requests: OpenAITtsRequest[];
  readonly stats: {
    /** TCP connections accepted, and open now. */
    connections: number;
    openConnections: number;
    speechRequests: number;
    modelRequests: number;
    /** Speech responses the client walked away from before their end. */
    disconnects: number;
    /** Speech responses being streamed now. */
    active: number;
  };
  close(): Promise<void>;
}

export const OPENAI_TTS_RATE = 24000;

export async function startOpenAITtsServer(opts: OpenAITtsServerOptions = {}): Promise<OpenAITtsServer> {
  const apiKey = opts.apiKey ?? 'sk-test-0123456789abcdef';
  const msPerChar = opts.msPerChar ?? 60;
  const chunkBytes = opts.chunkBytes ?? 4800;
  const chunkDelayMs = opts.chunkDelayMs ?? 5;
  const maxRequests = opts.maxRequests ?? 500;
  const faults: OpenAITtsServerFaults = { ...opts.faults };
  const requests: OpenAITtsRequest[] = [];
  const stats = { connections: 0, openConnections: 0, speechRequests: 0, modelRequests: 0, disconnects: 0, active: 0 };
  const sockets = new Set<Socket>();
  const connectionIds = new WeakMap<Socket, number>();
  const stalled = new Set<ServerResponse>();

  const server: Server = createServer((req, res) => {
    handle(req, res).catch(() => res.destroy());
  });
  server.keepAliveTimeout = 10_000;
  server.on('connection', (socket: Socket) => {
    stats.connections++;
    stats.openConnections++;
    connectionIds.set(socket, stats.connections);
    sockets.add(socket);
    socket.on('close', () => {
      stats.openConnections--;
      sockets.delete(socket);
    });
  });

  function fail(res: ServerResponse, status: number, message: string, type: string, code: string | null, param = null) {
    res.writeHead(status, { 'content-type': 'application/json', 'x-should-retry': 'false' });
    res.end(JSON.stringify({ error: { message, type, param, code } }));
  }

  async function readBody(req: IncomingMessage): Promise<string> {
    let body = '';
    for await (const chunk of req) {
      body += String(chunk);
      if (body.length > 100_000) throw new Error('body too large');
    }
    return body;
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const auth = req.headers.authorization ?? '';
    const given = auth.startsWith('Bearer ') ? auth.slice(7) : '';
    if (requests.length >= maxRequests) return fail(res, 429, 'Too many requests', 'requests', 'rate_limit_exceeded');
    if (faults.rejectAuth || given !== apiKey) {
      await readBody(req);
      // Echoes the key it was given, as real OpenAI does (partly masked there): adapters must redact it.
      return fail(res, 401, `Incorrect API key provided: ${given}.`, 'invalid_request_error', 'invalid_api_key');
    }
    if (req.method === 'GET' && path === '/v1/models') {
      stats.modelRequests++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          object: 'list',
          data: [{ id: 'gpt-4o-mini-tts', object: 'model', created: 0, owned_by: 'system' }],
        }),
      );
      return;
    }
    if (req.method !== 'POST' || path !== '/v1/audio/speech') {
      return fail(res, 404, `Invalid URL (${req.method} ${path})`, 'invalid_request_error', null);
    }
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(await readBody(req)) as Record<string, unknown>;
    } catch {
      return fail(res, 400, 'We could not parse the JSON body of your request.', 'invalid_request_error', null);
    }
    for (const field of ['model', 'voice', 'input'] as const) {
      if (typeof body[field] !== 'string' || body[field] === '') {
        return fail(
          res,
          400,
          `Missing required parameter: '${field}'.`,
          'invalid_request_error',
          'missing_required_parameter',
        );
      }
    }
    const input = body.input as string;
    if (input.length > 4096) {
      return fail(res, 400, 'input is longer than 4096 characters', 'invalid_request_error', 'string_above_max_length');
    }
    if (body.response_format !== 'pcm') {
      return fail(res, 400, `this server only makes response_format "pcm"`, 'invalid_request_error', null);
    }
    stats.speechRequests++;
    const record: OpenAITtsRequest = {
      model: body.model as string,
      voice: body.voice as string,
      input,
      responseFormat: 'pcm',
      connection: connectionIds.get(req.socket) ?? 0,
      bytesSent: 0,
      disconnected: false,
      completed: false,
    };
    requests.push(record);
    if (faults.serverError)
      return fail(res, 500, 'The server had an error while processing your request.', 'server_error', null);

    stats.active++;
    res.on('close', () => {
      stats.active--;
      stalled.delete(res);
      if (!record.completed) {
        record.disconnected = true;
        stats.disconnects++;
      }
    });
    if (faults.stallBeforeFirstByte) {
      stalled.add(res); // answered never; the client's timeout or abort ends it
      return;
    }
    if (faults.firstByteDelayMs) await sleep(faults.firstByteDelayMs);
    if (res.destroyed) return;
    res.writeHead(200, { 'content-type': 'audio/pcm' });
    const pcm = toneFor(input, msPerChar, OPENAI_TTS_RATE);
    const bytes = new Uint8Array(pcm.buffer, pcm.byteOffset, pcm.byteLength);
    // Odd-sized writes on purpose: a sample may be split across body chunks.
    const step = chunkBytes % 2 === 0 ? chunkBytes + 1 : chunkBytes;
    for (let at = 0; at < bytes.length; at += step) {
      if (res.destroyed) return;
      if (faults.dropAfterBytes !== undefined && record.bytesSent >= faults.dropAfterBytes) {
        res.socket?.destroy();
        return;
      }
      const piece = bytes.subarray(at, Math.min(bytes.length, at + step));
      res.write(piece);
      record.bytesSent += piece.length;
      await sleep(chunkDelayMs);
    }
    if (res.destroyed) return;
    record.completed = true;
    res.end();
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };

  let closed: Promise<void> | undefined;
  const close = () => {
    closed ??= new Promise<void>((resolve) => {
      clearTimeout(lifetime);
      for (const res of stalled) res.destroy();
      server.close(() => resolve());
      for (const s of sockets) s.destroy();
    });
    return closed;
  };
  const lifetime = setTimeout(() => void close(), opts.lifetimeMs ?? 60_000);
  lifetime.unref();

  return { url: `http://127.0.0.1:${port}/v1`, apiKey, faults, requests, stats, close };
}

/** One Hann-shaped tone burst per letter or digit, a gap for anything else (code points, like the speech). */
export function toneFor(text: string, msPerChar: number, rate: number, hz = 220): Int16Array {
  const per = Math.round((msPerChar * rate) / 1000);
  const chars = Array.from(text);
  const out = new Int16Array(per * chars.length);
  chars.forEach((ch, c) => {
    if (!/[\p{L}\p{N}]/u.test(ch)) return;
    for (let k = 0; k < per; k++) {
      const n = c * per + k;
      const envelope = 0.5 - 0.5 * Math.cos((2 * Math.PI * k) / per);
      out[n] = Math.round(0.3 * 32767 * envelope * Math.sin((2 * Math.PI * hz * n) / rate));
    }
  });
  return out;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
