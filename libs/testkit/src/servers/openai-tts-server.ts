import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { authorization, LocalHttpServer, readBody, refusesKey, sendJson, sleep, writeInSteps } from './local-http.js';
import { pcmBytes, toneFor } from './tone.js';

export { toneFor } from './tone.js';

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

const MODELS = { object: 'list', data: [{ id: 'gpt-4o-mini-tts', object: 'model', created: 0, owned_by: 'system' }] };

export async function startOpenAITtsServer(opts: OpenAITtsServerOptions = {}): Promise<OpenAITtsServer> {
  const server = new OpenAITtsTestServer(opts);
  await server.listen();
  return server;
}

/** An OpenAI error body: `{"error":{message,type,param,code}}`, with `x-should-retry: false`. */
function fail(res: ServerResponse, status: number, message: string, type: string, code: string | null, param = null) {
  sendJson(res, status, { error: { message, type, param, code } }, { 'x-should-retry': 'false' });
}

type SpeechFields = Pick<OpenAITtsRequest, 'model' | 'voice' | 'input'>;
/** Why a speech request is refused with 400. */
interface Refusal {
  message: string;
  code: string | null;
}

function parseSpeech(body: Record<string, unknown>): SpeechFields | Refusal {
  for (const field of ['model', 'voice', 'input'] as const) {
    if (typeof body[field] !== 'string' || body[field] === '') {
      return { message: `Missing required parameter: '${field}'.`, code: 'missing_required_parameter' };
    }
  }
  const input = body.input as string;
  if (input.length > 4096) return { message: 'input is longer than 4096 characters', code: 'string_above_max_length' };
  if (body.response_format !== 'pcm') return { message: `this server only makes response_format "pcm"`, code: null };
  return { model: body.model as string, voice: body.voice as string, input };
}

class OpenAITtsTestServer implements OpenAITtsServer {
  readonly apiKey: string;
  readonly faults: OpenAITtsServerFaults;
  readonly requests: OpenAITtsRequest[] = [];
  readonly stats = {
    connections: 0,
    openConnections: 0,
    speechRequests: 0,
    modelRequests: 0,
    disconnects: 0,
    active: 0,
  };
  private readonly msPerChar: number;
  private readonly chunkBytes: number;
  private readonly chunkDelayMs: number;
  private readonly maxRequests: number;
  private readonly lifetimeMs: number;
  /** Speech responses held unanswered by the stallBeforeFirstByte fault. */
  private readonly stalled = new Set<ServerResponse>();
  private readonly host = new LocalHttpServer((req, res) => this.handle(req, res));

  constructor(opts: OpenAITtsServerOptions) {
    this.apiKey = opts.apiKey ?? 'sk-test-0123456789abcdef';
    this.msPerChar = opts.msPerChar ?? 60;
    this.chunkBytes = opts.chunkBytes ?? 4800;
    this.chunkDelayMs = opts.chunkDelayMs ?? 5;
    this.maxRequests = opts.maxRequests ?? 500;
    this.lifetimeMs = opts.lifetimeMs ?? 60_000;
    this.faults = { ...opts.faults };
    this.host.http.keepAliveTimeout = 10_000;
    this.host.http.on('connection', (socket: Socket) => {
      this.stats.connections++;
      this.stats.openConnections++;
      socket.on('close', () => this.stats.openConnections--);
    });
  }

  get url(): string {
    return `${this.host.origin}/v1`;
  }

  async listen(): Promise<void> {
    await this.host.listen();
    this.host.closeAfter(this.lifetimeMs, () => this.close());
  }

  close(): Promise<void> {
    return this.host.close(() => {
      for (const res of this.stalled) res.destroy();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const given = authorization(req, 'Bearer') ?? '';
    if (this.requests.length >= this.maxRequests) {
      return fail(res, 429, 'Too many requests', 'requests', 'rate_limit_exceeded');
    }
    if (refusesKey(this.faults, this.apiKey, given)) {
      await readBody(req);
      // Echoes the key it was given, as real OpenAI does (partly masked there): adapters must redact it.
      return fail(res, 401, `Incorrect API key provided: ${given}.`, 'invalid_request_error', 'invalid_api_key');
    }
    if (req.method === 'GET' && path === '/v1/models') {
      this.stats.modelRequests++;
      return sendJson(res, 200, MODELS);
    }
    if (req.method !== 'POST' || path !== '/v1/audio/speech') {
      return fail(res, 404, `Invalid URL (${req.method} ${path})`, 'invalid_request_error', null);
    }
    return this.speech(req, res);
  }

  /** `POST /v1/audio/speech`: checks the body, records the request, then answers with PCM (or a fault). */
  private async speech(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(await readBody(req)) as Record<string, unknown>;
    } catch {
      return fail(res, 400, 'We could not parse the JSON body of your request.', 'invalid_request_error', null);
    }
    const fields = parseSpeech(body);
    if ('message' in fields) return fail(res, 400, fields.message, 'invalid_request_error', fields.code);
    this.stats.speechRequests++;
    const record: OpenAITtsRequest = {
      ...fields,
      responseFormat: 'pcm',
      connection: this.host.connectionNumber(req.socket),
      bytesSent: 0,
      disconnected: false,
      completed: false,
    };
    this.requests.push(record);
    if (this.faults.serverError) {
      return fail(res, 500, 'The server had an error while processing your request.', 'server_error', null);
    }
    return this.stream(res, record);
  }

  private async stream(res: ServerResponse, record: OpenAITtsRequest): Promise<void> {
    this.stats.active++;
    res.on('close', () => {
      this.stats.active--;
      this.stalled.delete(res);
      if (!record.completed) {
        record.disconnected = true;
        this.stats.disconnects++;
      }
    });
    if (this.faults.stallBeforeFirstByte) {
      this.stalled.add(res); // answered never; the client's timeout or abort ends it
      return;
    }
    if (this.faults.firstByteDelayMs) await sleep(this.faults.firstByteDelayMs);
    if (res.destroyed) return;
    res.writeHead(200, { 'content-type': 'audio/pcm' });
    const bytes = pcmBytes(toneFor(record.input, this.msPerChar, OPENAI_TTS_RATE));
    const outcome = await writeInSteps(res, bytes, {
      // Odd-sized writes on purpose: a sample may be split across body chunks.
      step: this.chunkBytes % 2 === 0 ? this.chunkBytes + 1 : this.chunkBytes,
      delayMs: this.chunkDelayMs,
      cutBefore: (_writes, bytesSent) =>
        this.faults.dropAfterBytes !== undefined && bytesSent >= this.faults.dropAfterBytes,
      onWrite: (n) => (record.bytesSent += n),
    });
    if (outcome !== 'written') return;
    record.completed = true;
    res.end();
  }
}
