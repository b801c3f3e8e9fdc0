import { setTimeout as sleep } from 'node:timers/promises';
import type { ChatMessage } from '@va/protocol';
import type { LLM, LLMOptions } from '../types.js';

export interface FakeLLMOptions {
  /** The reply, or a function of the conversation (e.g. echo the last user message). */
  reply?: string | ((messages: readonly ChatMessage[]) => string);
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
  /** Calls that stopped early: their signal fired, or their consumer stopped reading. */
  aborted = 0;
  /** Calls that yielded their whole reply. */
  completed = 0;
  readonly #opts: FakeLLMOptions;

  constructor(opts: FakeLLMOptions = {}) {
    this.#opts = opts;
    this.model = opts.model ?? 'fake-model';
  }

  async *chat(messages: readonly ChatMessage[], _opts: LLMOptions, signal: AbortSignal): AsyncIterable<string> {
    this.calls.push(messages);
    const { reply = FAKE_LLM_DEFAULT_REPLY, ttftMs = 0, tokensPerSecond, fail } = this.#opts;
    const tokens = wordTokens(typeof reply === 'function' ? reply(messages) : reply);
    const gapMs = tokensPerSecond ? 1000 / tokensPerSecond : 0;
    // Index of the token the failure replaces; tokens.length = after the whole reply.
    const failAt = fail ? Math.min(fail.afterTokens ?? 0, tokens.length) : -1;
    let finished = false;
    try {
      for (let i = 0; i <= tokens.length; i++) {
        if (i === failAt) {
          finished = true;
          throw fail?.error ?? new Error('fake LLM failure');
        }
        const token = tokens[i];
        if (token === undefined) break;
        if (!(await pause(i === 0 ? ttftMs : gapMs, signal))) return;
        yield token;
      }
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
