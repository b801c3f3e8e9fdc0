import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { listen, readChatRequest, sendJson, type Refusal } from './http.js';
import { planReply, sendWholeReply, streamReply, type Pacing } from './reply.js';
import { errorBody } from './wire.js';

export interface LocalLlmServerOptions {
  /** Default 127.0.0.1: the server is for this machine (set 0.0.0.0 in a container). */
  host?: string;
  /** Default 0: any free port (read it from the result). */
  port?: number;
  /** Delay before the first token, like a model's time to first token. Default 150. */
  ttftMs?: number;
  /** Pace of the following tokens. Default 60. */
  tokensPerSecond?: number;
}

/** Live counters, mostly for tests ("did the server see the client go away?"). */
export interface LocalLlmStats {
  /** HTTP requests received, any route. */
  requests: number;
  /** Chat completions answered in full. */
  completions: number;
  /** Chat completions cut short because the client disconnected (or the server stopped). */
  disconnects: number;
  /** Requests answered with 4xx. */
  rejected: number;
}

export interface LocalLlmServer {
  /** Base URL for OpenAI clients, ending in /v1. */
  url: string;
  port: number;
  readonly stats: Readonly<LocalLlmStats>;
  stop(): Promise<void>;
}

/** The id GET /v1/models lists; any model name is accepted in requests and echoed back. */
export const LOCAL_MODEL_ID = 'va-local-rule-brain';

/** An OpenAI-compatible chat-completions server whose "model" is the rule-based brain. */
export async function startLocalLlmServer(opts: LocalLlmServerOptions = {}): Promise<LocalLlmServer> {
  const { host = '127.0.0.1', port = 0, ttftMs = 150, tokensPerSecond = 60 } = opts;
  const api = new LocalLlmApi({ ttftMs, tokenGapMs: tokensPerSecond > 0 ? 1000 / tokensPerSecond : 0 });
  const server = createServer((req, res) => {
    api.handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendJson(res, 500, errorBody(String(err), 'server_error'));
      else res.destroy();
    });
  });
  await listen(server, port, host);
  const actualPort = (server.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;

  return {
    url: `http://${urlHost}:${actualPort}/v1`,
    port: actualPort,
    stats: api.stats,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Open streams and idle keep-alive sockets would hold close() forever.
        server.closeAllConnections();
      }),
  };
}

/** The routes of the API, and the counters they keep. */
class LocalLlmApi {
  readonly stats: LocalLlmStats = { requests: 0, completions: 0, disconnects: 0, rejected: 0 };

  constructor(private readonly pacing: Pacing) {}

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.stats.requests++;
    const path = new URL(req.url ?? '/', 'http://localhost').pathname.replace(/\/+$/, '');
    if (path === '/v1/chat/completions') {
      if (req.method === 'POST') return this.chatCompletions(req, res);
      return this.reject(res, { status: 405, message: `method ${req.method} not allowed on ${path}`, param: null });
    }
    if (path === '/v1/models' && req.method === 'GET') {
      return sendJson(res, 200, {
        object: 'list',
        data: [{ id: LOCAL_MODEL_ID, object: 'model', created: 0, owned_by: 'va-local-llm' }],
      });
    }
    return this.reject(res, { status: 404, message: `no route ${req.method} ${path}`, param: null });
  }

  private async chatCompletions(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const read = await readChatRequest(req);
    if ('refusal' in read) return this.reject(res, read.refusal);
    const { request } = read;
    const signal = this.abortOnDisconnect(res);
    const reply = planReply(request);
    const finished = request.stream
      ? await streamReply(res, reply, this.pacing, signal, request.stream_options?.include_usage === true)
      : await sendWholeReply(res, reply, this.pacing, signal);
    if (finished) this.stats.completions++;
  }

  /** Generation stops as soon as the client goes away: a cancelled turn must not keep a model busy. */
  private abortOnDisconnect(res: ServerResponse): AbortSignal {
    const generation = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) {
        this.stats.disconnects++;
        generation.abort();
      }
    });
    return generation.signal;
  }

  private reject(res: ServerResponse, { status, message, param }: Refusal): void {
    this.stats.rejected++;
    sendJson(res, status, errorBody(message, 'invalid_request_error', param));
  }
}
