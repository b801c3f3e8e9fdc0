/**
 * OpenAI-compatible providers by name (`LLM_PROVIDER=groq`): where they live, which env var holds their key,
 * and which optional request fields they take (servers differ, and some refuse fields they do not know).
 * Sources: docs/provider-protocols.md §4.4.
 */
export interface LlmPreset {
  /** Default base URL; `<prefix>LLM_BASE_URL` (or `<NAME>_BASE_URL`) overrides it. */
  baseURL?: string;
  /** Env var holding the key when `<prefix>LLM_API_KEY` is unset; undefined = no key needed (local servers). */
  keyVar?: string;
  /** Field for the output cap. */
  maxTokensField: 'max_tokens' | 'max_completion_tokens';
  /** Sends `stream_options.include_usage`. */
  streamUsage: boolean;
  /** Sends `prompt_cache_key`. */
  promptCacheKey: boolean;
}

export const LLM_PRESETS = {
  openai: {
    baseURL: 'https://api.openai.com/v1',
    keyVar: 'OPENAI_API_KEY',
    maxTokensField: 'max_completion_tokens',
    streamUsage: true,
    promptCacheKey: true,
  },
  groq: {
    baseURL: 'https://api.groq.com/openai/v1',
    keyVar: 'GROQ_API_KEY',
    maxTokensField: 'max_tokens',
    streamUsage: true,
    promptCacheKey: false,
  },
  cerebras: {
    baseURL: 'https://api.cerebras.ai/v1',
    keyVar: 'CEREBRAS_API_KEY',
    maxTokensField: 'max_completion_tokens',
    streamUsage: true,
    promptCacheKey: false,
  },
  ollama: {
    baseURL: 'http://127.0.0.1:11434/v1',
    maxTokensField: 'max_tokens',
    streamUsage: true,
    promptCacheKey: false,
  },
  vllm: { baseURL: 'http://127.0.0.1:8000/v1', maxTokensField: 'max_tokens', streamUsage: true, promptCacheKey: false },
  llamacpp: {
    baseURL: 'http://127.0.0.1:8080/v1',
    maxTokensField: 'max_tokens',
    streamUsage: true,
    promptCacheKey: false,
  },
  /** Any other OpenAI-compatible server (`@va/local-llm` included): needs `LLM_BASE_URL`. */
  compatible: { maxTokensField: 'max_tokens', streamUsage: true, promptCacheKey: false },
} as const satisfies Record<string, LlmPreset>;

export type LlmPresetName = keyof typeof LLM_PRESETS;
export const LLM_PRESET_NAMES = Object.keys(LLM_PRESETS) as LlmPresetName[];
