import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { z } from 'zod';
import { ChatCompletionRequest } from './wire.js';

/** The HTTP side of the server: reading a request body, answering with JSON, listening. */

const MAX_BODY_BYTES = 1_000_000;

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
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

/** Why a request is refused: the 4xx status and what the error body says. */
export interface Refusal {
  status: number;
  message: string;
  param: string | null;
}

/** The chat-completions request in the body, read and validated; or why it is refused. */
export async function readChatRequest(
  req: IncomingMessage,
): Promise<{ request: ChatCompletionRequest } | { refusal: Refusal }> {
  let body: unknown;
  try {
    body = JSON.parse(await readBody(req));
  } catch (err) {
    const tooLarge = err instanceof BodyTooLargeError;
    return {
      refusal: {
        status: tooLarge ? 413 : 400,
        message: tooLarge ? err.message : 'request body is not valid JSON',
        param: null,
      },
    };
  }
  const parsed = ChatCompletionRequest.safeParse(body);
  if (!parsed.success) {
    const param = parsed.error.issues[0]?.path.join('.') || null;
    return { refusal: { status: 400, message: z.prettifyError(parsed.error), param } };
  }
  return { request: parsed.data };
}

/** Resolves once `server` accepts connections; rejects when it cannot listen (e.g. the port is taken). */
export function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
