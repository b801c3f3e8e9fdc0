import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { decide, wordTokens } from './brain.js';
import {
  ChatCompletionRequest,
  chunk,
  completion,
  contentText,
  errorBody,
  usageChunk,
  type FinishReason,
  type ReplyMeta,
  type Usage,
} from './wire.js';

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
const MAX_BODY_BYTES = 1_000_000;

/** An OpenAI-compatible chat-completions server whose "model" is the rule-based brain. */
export async function startLocalLlmServer(opts: LocalLlmServerOptions = {}): Promise<LocalLlmServer> {
  const { host = '127.0.0.1', port = 0, ttftMs = 150, tokensPerSecond = 60 } = opts;
  const stats: LocalLlmStats = { requests: 0, completions: 0, disconnects: 0, rejected: 0 };
  const tokenGapMs = tokensPerSecond > 0 ? 1000 / tokensPerSecond : 0;

  const reject = (res: ServerResponse, status: number, message: string, type: string, param: string | null = null) => {
    stats.rejected++;
    sendJson(res, status, errorBody(message, type, param));
  };

  async function chatCompletions(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let body: unknown;
    try {
      body = JSON.parse(await readBody(req));
    } catch (err) {
      const tooLarge = err instanceof BodyTooLargeError;
      return reject(
        res,
        tooLarge ? 413 : 400,
        tooLarge ? err.message : 'request body is not valid JSON',
        'invalid_request_error',
      );
    }
    const parsed = ChatCompletionRequest.safeParse(body);
    if (!parsed.success) {
      const param = parsed.error.issues[0]?.path.join('.') || null;
      return reject(res, 400, z.prettifyError(parsed.error), 'invalid_request_error', param);
    }
    const request = parsed.data;

    // Generation stops as soon as the client goes away: a cancelled turn must not keep a model busy.
    const generation = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) {
        stats.disconnects++;
        generation.abort();
      }
    });

    const messages = request.messages.map((m) => ({ role: m.role, content: contentText(m.content) }));
    const maxTokens = request.max_completion_tokens ?? request.max_tokens ?? Infinity;
    const tools = (request.tools ?? []).map((t) => ({
      name: t.function.name,
      description: t.function.description ?? '',
    }));
    const decision = decide(messages, tools);
    const toolCall =
      decision.kind === 'tool'
        ? {
            id: `call_${randomUUID().replaceAll('-', '').slice(0, 24)}`,
            name: decision.name,
            arguments: decision.arguments,
          }
        : undefined;
    const allTokens = decision.kind === 'text' ? wordTokens(decision.text) : [];
    const tokens = allTokens.slice(0, maxTokens);
    const finishReason: FinishReason = toolCall ? 'tool_calls' : tokens.length < allTokens.length ? 'length' : 'stop';
    const promptTokens = messages.reduce((sum, m) => sum + wordTokens(m.content).length, 0);
    const usage: Usage = {
      prompt_tokens: promptTokens,
      completion_tokens: tokens.length,
      total_tokens: promptTokens + tokens.length,
    };
    const meta: ReplyMeta = {
      id: `chatcmpl-${randomUUID().replaceAll('-', '')}`,
      created: Math.floor(Date.now() / 1000),
      model: request.model,
    };

    if (!request.stream) {
      // Same timing as streaming: the whole reply is "generated" before it is sent.
      if (!(await pause(ttftMs + tokenGapMs * Math.max(tokens.length - 1, 0), generation.signal))) return;
      sendJson(res, 200, completion(meta, tokens.join(''), finishReason, usage, toolCall));
      stats.completions++;
      return;
    }

    // Headers go out at once, as real servers do; the first token follows after ttftMs.
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    res.flushHeaders();
    const send = (data: unknown) => res.write(`data: ${JSON.stringify(data)}\n\n`);
    for (const [i, token] of tokens.entries()) {
      if (!(await pause(i === 0 ? ttftMs : tokenGapMs, generation.signal))) return;
      send(chunk(meta, i === 0 ? { role: 'assistant', content: token } : { content: token }, null));
    }
    if (toolCall) {
      // As OpenAI streams a call: id and name first, then the arguments in a later chunk.
      if (!(await pause(ttftMs, generation.signal))) return;
      const { id, name } = toolCall;
      send(
        chunk(
          meta,
          { role: 'assistant', tool_calls: [{ index: 0, id, type: 'function', function: { name, arguments: '' } }] },
          null,
        ),
      );
      send(chunk(meta, { tool_calls: [{ index: 0, function: { arguments: toolCall.arguments } }] }, null));
    }
    send(chunk(meta, {}, finishReason));
    if (request.stream_options?.include_usage) send(usageChunk(meta, usage));
    res.end('data: [DONE]\n\n');
    stats.completions++;
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    stats.requests++;
    const path = new URL(req.url ?? '/', 'http://localhost').pathname.replace(/\/+$/, '');
    if (path === '/v1/chat/completions') {
      if (req.method === 'POST') return chatCompletions(req, res);
      return reject(res, 405, `method ${req.method} not allowed on ${path}`, 'invalid_request_error');
    }
    if (path === '/v1/models' && req.method === 'GET') {
      return sendJson(res, 200, {
        object: 'list',
        data: [{ id: LOCAL_MODEL_ID, object: 'model', created: 0, owned_by: 'va-local-llm' }],
      });
    }
    return reject(res, 404, `no route ${req.method} ${path}`, 'invalid_request_error');
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendJson(res, 500, errorBody(String(err), 'server_error'));
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const actualPort = (server.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;

  return {
    url: `http://${urlHost}:${actualPort}/v1`,
    port: actualPort,
    stats,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Open streams and idle keep-alive sockets would hold close() forever.
        server.closeAllConnections();
      }),
  };
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

class BodyTooLargeError extends Error {}

async function readBody(req: IncomingMessage): Promise<string> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const part of req as AsyncIterable<Buffer>) {
    size += part.length;
    if (size > MAX_BODY_BYTES) throw new BodyTooLargeError(`request body over ${MAX_BODY_BYTES} bytes`);
    parts.push(part);
  }
  return Buffer.concat(parts).toString('utf8');
}

/** Waits `ms`; false if the generation was aborted first. */
async function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return false;
  if (ms <= 0) return true;
  try {
    await sleep(ms, undefined, { signal });
    return true;
  } catch {
    return false;
  }
}
