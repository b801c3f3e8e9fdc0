import { setTimeout as sleep } from 'node:timers/promises';
import type { ChatMessage } from '@va/protocol';
import { ProviderError } from '../errors.js';
import type { LLM, LLMEvent, LLMOptions } from '../types.js';

/** One scripted reply: text, or tool calls (after any text), as a model would answer. */
export type FakeLLMReply = string | { text?: string; toolCalls: { name: string; arguments?: string }[] };

export interface FakeLLMOptions {
  /** The reply, or a function of the conversation (e.g. echo the last user message, call a tool first). */
  reply?: FakeLLMReply | ((messages: readonly ChatMessage[], opts: LLMOptions) => FakeLLMReply);
  /** Delay before the first token. Default 0. */
  ttftMs?: number;
  /** Pace of the following tokens; unset = as fast as the consumer reads. */
  tokensPerSecond?: number;
  /** Throw `error` once `afterTokens` tokens were yielded (0, the default: before the first token). */
  fail?: { error?: Error; afterTokens?: number };
  model?: string;
}

export const FAKE_LLM_DEFAULT_REPLY = 'This is a scripted reply from the fake model, one word at a time.';

/** Word-ish tokens that keep their leading space, like real LLM deltas: "Hi", " there", "." stays attached. */
function wordTokens(text: string): string[] {
  return text.match(/\s*\S+/g) ?? [];
}

/** A scripted LLM for tests: deterministic text and timing, honours abort, can be told to fail. */
export class FakeLLM implements LLM {
  readonly provider = 'fake';
  readonly model: string;
  /** Conversations passed to `chat`, in call order. */
  readonly calls: (readonly ChatMessage[])[] = [];
  /** The options of each call, in call order. */
  readonly options: LLMOptions[] = [];
  /** Calls that stopped early: their signal fired, or their consumer stopped reading. */
  aborted = 0;
  /** Calls that yielded their whole reply. */
  completed = 0;
  readonly #opts: FakeLLMOptions;

  constructor(opts: FakeLLMOptions = {}) {
    this.#opts = opts;
    this.model = opts.model ?? 'fake-model';
  }

  async *chat(messages: readonly ChatMessage[], opts: LLMOptions, signal: AbortSignal): AsyncIterable<LLMEvent> {
    this.calls.push(messages);
    this.options.push(opts);
    const { reply = FAKE_LLM_DEFAULT_REPLY, ttftMs = 0, tokensPerSecond, fail } = this.#opts;
    const scripted = typeof reply === 'function' ? reply(messages, opts) : reply;
    const text = typeof scripted === 'string' ? scripted : (scripted.text ?? '');
    const toolCalls = typeof scripted === 'string' ? [] : scripted.toolCalls;
    const tokens = wordTokens(text);
    const gapMs = tokensPerSecond ? 1000 / tokensPerSecond : 0;
    // Index of the token the failure replaces; tokens.length = after the whole reply.
    const failAt = fail ? Math.min(fail.afterTokens ?? 0, tokens.length) : -1;
    let finished = false;
    try {
      for (let i = 0; i <= tokens.length; i++) {
        if (i === failAt) {
          finished = true;
          throw fail?.error ?? new ProviderError('fake', 'server', 'fake LLM failure');
        }
        const token = tokens[i];
        if (token === undefined) break;
        if (!(await pause(i === 0 ? ttftMs : gapMs, signal))) return;
        yield { type: 'text', text: token };
      }
      if (toolCalls.length > 0) {
        if (!(await pause(tokens.length === 0 ? ttftMs : gapMs, signal))) return;
        yield {
          type: 'tool-calls',
          calls: toolCalls.map((c, i) => ({
            id: `fake_call_${this.calls.length}_${i}`,
            name: c.name,
            arguments: c.arguments ?? '{}',
          })),
        };
      }
      const promptChars = messages.reduce((n, m) => n + m.content.length, 0);
      yield { type: 'usage', usage: { promptTokens: Math.ceil(promptChars / 4), completionTokens: tokens.length } };
      finished = true;
      this.completed++;
    } finally {
      // Reached by an abort, and also by a consumer that stopped reading (return() at a yield).
      if (!finished) this.aborted++;
    }
  }
}

/** Waits `ms` (none if 0); false if the signal fired first. */
async function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  if (ms <= 0) return !signal.aborted;
  try {
    await sleep(ms, undefined, { signal });
    return true;
  } catch {
    return false;
  }
}
