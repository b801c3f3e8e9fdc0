import OpenAI from 'openai';
import type { ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import type { ChatMessage } from '@va/protocol';
import type { LLM, LLMOptions } from '../types.js';

export interface OpenAICompatibleLLMOptions {
  /** e.g. https://api.groq.com/openai/v1, http://127.0.0.1:11434/v1 (Ollama). Default: OpenAI. */
  baseURL?: string;
  /** Local servers ignore it, but the SDK wants one: pass any non-empty string. */
  apiKey: string;
  model: string;
  /**
   * Time allowed until the response headers arrive (the SDK's timeout). A slow first token after the headers
   * is not caught here: that is FallbackLLM's `ttftTimeoutMs`.
   */
  timeoutMs?: number;
  /**
   * Retries of the request on connection errors, 408/409/429 and 5xx. The SDK only retries before the
   * response starts, so a reply is never restarted after its first token. Kept small: latency beats persistence.
   */
  maxRetries?: number;
  /** Body field for `maxTokens`: OpenAI's reasoning models accept only `max_completion_tokens`. */
  maxTokensField?: 'max_tokens' | 'max_completion_tokens';
  /** Label for traces (`va.provider`). */
  provider?: string;
}

export const OPENAI_DEFAULT_BASE_URL = 'https://api.openai.com/v1';

/** Any server that speaks OpenAI chat completions: OpenAI, Groq, Cerebras, Ollama, vLLM, llama.cpp, @va/local-llm. */
export class OpenAICompatibleLLM implements LLM {
  readonly provider: string;
  readonly model: string;
  readonly baseURL: string;
  readonly #client: OpenAI;
  readonly #maxTokensField: 'max_tokens' | 'max_completion_tokens';

  constructor(opts: OpenAICompatibleLLMOptions) {
    this.provider = opts.provider ?? 'openai';
    this.model = opts.model;
    this.baseURL = opts.baseURL ?? OPENAI_DEFAULT_BASE_URL;
    this.#maxTokensField = opts.maxTokensField ?? 'max_tokens';
    this.#client = new OpenAI({
      baseURL: this.baseURL,
      apiKey: opts.apiKey,
      timeout: opts.timeoutMs ?? 30_000,
      maxRetries: opts.maxRetries ?? 1,
    });
  }

  async *chat(messages: readonly ChatMessage[], opts: LLMOptions, signal: AbortSignal): AsyncIterable<string> {
    if (signal.aborted) return;
    try {
      // The signal goes to the SDK request, so an abort cancels the HTTP stream (the server sees a disconnect).
      const stream = await this.#client.chat.completions.create(
        {
          model: this.model,
          messages: messages.map(toOpenAIMessage),
          stream: true,
          ...(opts.temperature === undefined ? {} : { temperature: opts.temperature }),
          ...(opts.maxTokens === undefined ? {} : { [this.#maxTokensField]: opts.maxTokens }),
        },
        { signal },
      );
      for await (const chunk of stream) {
        const delta = chunk.choices[0]?.delta?.content;
        // Servers open with an empty role-only delta; consumers measure TTFT on the first real text.
        if (delta) yield delta;
      }
    } catch (err) {
      // Our own abort is a normal end (the caller stopped listening), not a provider failure.
      if (signal.aborted) return;
      const message = err instanceof Error ? err.message : String(err);
      throw new Error(`${this.provider} LLM ${this.model} at ${this.baseURL}: ${message}`, { cause: err });
    }
  }
}

function toOpenAIMessage(message: ChatMessage): ChatCompletionMessageParam {
  switch (message.role) {
    case 'system':
      return { role: 'system', content: message.content };
    case 'user':
      return { role: 'user', content: message.content };
    case 'assistant':
      return { role: 'assistant', content: message.content };
  }
}
