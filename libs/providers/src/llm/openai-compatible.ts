import OpenAI from 'openai';
import type { ChatCompletionMessageParam, ChatCompletionTool } from 'openai/resources/chat/completions';
import type { ChatMessage, ToolCall } from '@va/protocol';
import { kindOfStatus, ProviderError, redact } from '../errors.js';
import type { LLM, LLMEvent, LLMOptions, ToolSpec } from '../types.js';

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
  /**
   * Send `prompt_cache_key` (from `LLMOptions.promptCacheKey`). OpenAI uses it to route requests with the same
   * prompt prefix to the same cache; some compatible servers refuse unknown fields. Default: on for OpenAI only.
   */
  promptCacheKey?: boolean;
  /** Ask for usage in the stream (`stream_options.include_usage`); off for servers that refuse the field. */
  streamUsage?: boolean;
}

export const OPENAI_DEFAULT_BASE_URL = 'https://api.openai.com/v1';

/** Any server that speaks OpenAI chat completions: OpenAI, Groq, Cerebras, Ollama, vLLM, llama.cpp, @va/local-llm. */
export class OpenAICompatibleLLM implements LLM {
  readonly provider: string;
  readonly model: string;
  readonly baseURL: string;
  readonly #client: OpenAI;
  readonly #maxTokensField: 'max_tokens' | 'max_completion_tokens';
  readonly #promptCacheKey: boolean;
  readonly #streamUsage: boolean;
  readonly #apiKey: string;

  constructor(opts: OpenAICompatibleLLMOptions) {
    this.provider = opts.provider ?? 'openai';
    this.model = opts.model;
    this.baseURL = opts.baseURL ?? OPENAI_DEFAULT_BASE_URL;
    this.#maxTokensField = opts.maxTokensField ?? 'max_tokens';
    this.#promptCacheKey = opts.promptCacheKey ?? this.baseURL === OPENAI_DEFAULT_BASE_URL;
    this.#streamUsage = opts.streamUsage ?? true;
    this.#apiKey = opts.apiKey;
    this.#client = new OpenAI({
      baseURL: this.baseURL,
      apiKey: opts.apiKey,
      timeout: opts.timeoutMs ?? 30_000,
      maxRetries: opts.maxRetries ?? 1,
    });
  }

  /**
   * Opens the HTTP connection (TLS included) the next request will reuse from the SDK's keep-alive pool: a
   * `GET /models`, whose answer does not matter.
   */
  async prewarm(): Promise<void> {
    try {
      await this.#client.models.list({ timeout: 5_000, maxRetries: 0 });
    } catch {
      // A failed prewarm only means the first request connects itself.
    }
  }

  async *chat(messages: readonly ChatMessage[], opts: LLMOptions, signal: AbortSignal): AsyncIterable<LLMEvent> {
    if (signal.aborted) return;
    try {
      // The signal goes to the SDK request, so an abort cancels the HTTP stream (the server sees a disconnect).
      const stream = await this.#client.chat.completions.create(
        {
          model: opts.model ?? this.model,
          messages: messages.map(toOpenAIMessage),
          stream: true,
          ...(this.#streamUsage ? { stream_options: { include_usage: true } } : {}),
          ...(opts.temperature === undefined ? {} : { temperature: opts.temperature }),
          ...(opts.maxTokens === undefined ? {} : { [this.#maxTokensField]: opts.maxTokens }),
          ...(opts.tools?.length ? { tools: opts.tools.map(toOpenAITool) } : {}),
          ...(this.#promptCacheKey && opts.promptCacheKey ? { prompt_cache_key: opts.promptCacheKey } : {}),
        },
        { signal },
      );
      // Tool calls arrive in pieces (name first, arguments in fragments), keyed by index.
      const calls = new Map<number, ToolCall>();
      for await (const chunk of stream) {
        const choice = chunk.choices[0];
        const delta = choice?.delta;
        // Servers open with an empty role-only delta; consumers measure TTFT on the first real text.
        if (delta?.content) yield { type: 'text', text: delta.content };
        for (const part of delta?.tool_calls ?? []) {
          const call = calls.get(part.index) ?? { id: '', name: '', arguments: '' };
          if (part.id) call.id = part.id;
          if (part.function?.name) call.name += part.function.name;
          if (part.function?.arguments) call.arguments += part.function.arguments;
          calls.set(part.index, call);
        }
        if (choice?.finish_reason && calls.size > 0) {
          yield { type: 'tool-calls', calls: [...calls.values()].map((c, i) => ({ ...c, id: c.id || `call_${i}` })) };
          calls.clear();
        }
        // Groq has sent usage under `x_groq.usage` on the last chunk instead of `usage`.
        const usage = chunk.usage ?? (chunk as { x_groq?: { usage?: typeof chunk.usage } }).x_groq?.usage;
        if (usage) {
          const cached = usage.prompt_tokens_details?.cached_tokens;
          yield {
            type: 'usage',
            usage: {
              promptTokens: usage.prompt_tokens,
              completionTokens: usage.completion_tokens,
              ...(cached === undefined ? {} : { cachedTokens: cached }),
            },
          };
        }
      }
      // A server that ends the stream without a finish reason still made these calls.
      if (calls.size > 0) yield { type: 'tool-calls', calls: [...calls.values()] };
    } catch (err) {
      // Our own abort is a normal end (the caller stopped listening), not a provider failure.
      if (signal.aborted) return;
      throw toProviderError(this.provider, `LLM ${this.model} at ${this.baseURL}`, err, this.#apiKey);
    }
  }
}

function toOpenAITool(tool: ToolSpec): ChatCompletionTool {
  return {
    type: 'function',
    function: { name: tool.name, description: tool.description, parameters: tool.parameters },
  };
}

function toOpenAIMessage(message: ChatMessage): ChatCompletionMessageParam {
  switch (message.role) {
    case 'system':
      return { role: 'system', content: message.content };
    case 'user':
      return { role: 'user', content: message.content };
    case 'assistant':
      return message.toolCalls
        ? {
            role: 'assistant',
            content: message.content || null,
            tool_calls: message.toolCalls.map((c) => ({
              id: c.id,
              type: 'function' as const,
              function: { name: c.name, arguments: c.arguments },
            })),
          }
        : { role: 'assistant', content: message.content };
    case 'tool':
      return { role: 'tool', tool_call_id: message.toolCallId, content: message.content };
  }
}

/** An OpenAI SDK failure as a typed error: HTTP status → kind, connection and timeout failures told apart. */
export function toProviderError(provider: string, what: string, err: unknown, apiKey?: string): ProviderError {
  const message = redact(err instanceof Error ? err.message : String(err), [apiKey]);
  if (err instanceof OpenAI.APIConnectionTimeoutError) {
    return new ProviderError(provider, 'timeout', `${what}: ${message}`, { cause: err });
  }
  if (err instanceof OpenAI.APIConnectionError) {
    return new ProviderError(provider, 'connection', `${what}: ${message}`, { cause: err });
  }
  if (err instanceof OpenAI.APIError && typeof err.status === 'number') {
    return new ProviderError(provider, kindOfStatus(err.status), `${what}: ${message}`, {
      cause: err,
      status: err.status,
    });
  }
  return new ProviderError(provider, 'server', `${what}: ${message}`, { cause: err });
}
