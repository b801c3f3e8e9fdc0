import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { decide, wordTokens } from './brain.js';
import { sendJson } from './http.js';
import {
  chunk,
  completion,
  contentText,
  usageChunk,
  type ChatCompletionRequest,
  type FinishReason,
  type ReplyMeta,
  type Usage,
} from './wire.js';

/** A reply's timing, like a model's: the delay before the first token, then the gap between tokens. */
export interface Pacing {
  ttftMs: number;
  tokenGapMs: number;
}

/** The brain's answer to one request in wire terms, the same whether it is then streamed or sent whole. */
export interface PlannedReply {
  meta: ReplyMeta;
  /** The text's tokens, cut to the request's max tokens (none when the brain calls a tool). */
  tokens: string[];
  toolCall: { id: string; name: string; arguments: string } | undefined;
  finishReason: FinishReason;
  usage: Usage;
}

/** Asks the brain what to reply to `request`, and sizes the reply as a model would count it. */
export function planReply(request: ChatCompletionRequest): PlannedReply {
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
  return { meta, tokens, toolCall, finishReason, usage };
}

/** Sends the reply as one JSON body. False when the generation was aborted before it was sent. */
export async function sendWholeReply(
  res: ServerResponse,
  reply: PlannedReply,
  pacing: Pacing,
  signal: AbortSignal,
): Promise<boolean> {
  const { meta, tokens, toolCall, finishReason, usage } = reply;
  // Same timing as streaming: the whole reply is "generated" before it is sent.
  if (!(await pause(pacing.ttftMs + pacing.tokenGapMs * Math.max(tokens.length - 1, 0), signal))) return false;
  sendJson(res, 200, completion(meta, tokens.join(''), finishReason, usage, toolCall));
  return true;
}

/** Streams the reply as server-sent events, paced. False when the generation was aborted part way. */
export async function streamReply(
  res: ServerResponse,
  reply: PlannedReply,
  pacing: Pacing,
  signal: AbortSignal,
  includeUsage: boolean,
): Promise<boolean> {
  const { meta, tokens, toolCall, finishReason, usage } = reply;
  // Headers go out at once, as real servers do; the first token follows after ttftMs.
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
  res.flushHeaders();
  const send = (data: unknown) => res.write(`data: ${JSON.stringify(data)}\n\n`);
  for (const [i, token] of tokens.entries()) {
    if (!(await pause(i === 0 ? pacing.ttftMs : pacing.tokenGapMs, signal))) return false;
    send(chunk(meta, i === 0 ? { role: 'assistant', content: token } : { content: token }, null));
  }
  if (toolCall) {
    // As OpenAI streams a call: id and name first, then the arguments in a later chunk.
    if (!(await pause(pacing.ttftMs, signal))) return false;
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
  if (includeUsage) send(usageChunk(meta, usage));
  res.end('data: [DONE]\n\n');
  return true;
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
