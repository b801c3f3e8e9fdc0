import { z } from 'zod';
import type { LLM } from '../types.js';
import { FallbackLLM } from './fallback.js';
import { OpenAICompatibleLLM } from './openai-compatible.js';
import { LLM_PRESET_NAMES, LLM_PRESETS, type LlmPreset, type LlmPresetName } from './presets.js';

/**
 * Fast and deep responders read the same variables under their own prefix (FAST_LLM_MODEL, DEEP_LLM_MODEL);
 * session-context's summaries use SUMMARY_.
 */
export type LlmEnvPrefix = '' | 'FAST_' | 'DEEP_' | 'SUMMARY_';

/** Variable name (without prefix) for each field, so errors name what the operator must set. */
const VARS = {
  provider: 'LLM_PROVIDER',
  baseURL: 'LLM_BASE_URL',
  apiKey: 'LLM_API_KEY',
  model: 'LLM_MODEL',
  timeoutMs: 'LLM_TIMEOUT_MS',
  maxRetries: 'LLM_MAX_RETRIES',
  maxTokensField: 'LLM_MAX_TOKENS_FIELD',
  promptCacheKey: 'LLM_PROMPT_CACHE_KEY',
  streamUsage: 'LLM_STREAM_USAGE',
  fallback: 'LLM_FALLBACK',
  ttftTimeoutMs: 'LLM_TTFT_TIMEOUT_MS',
  unhealthyMs: 'LLM_UNHEALTHY_MS',
} as const;

const LlmEnv = z.object({
  provider: z.enum(LLM_PRESET_NAMES).optional(),
  baseURL: z.url().optional(),
  apiKey: z.string().min(1).optional(),
  model: z.string().min(1, 'is required'),
  timeoutMs: z.coerce.number().int().positive().optional(),
  maxRetries: z.coerce.number().int().min(0).max(5).optional(),
  maxTokensField: z.enum(['max_tokens', 'max_completion_tokens']).optional(),
  promptCacheKey: z.stringbool().optional(),
  streamUsage: z.stringbool().optional(),
  /** `provider:model,provider:model` tried in order after the primary. */
  fallback: z
    .string()
    .regex(/^[a-z]+:[^,]+(,[a-z]+:[^,]+)*$/, 'must be provider:model[,provider:model…]')
    .optional(),
  ttftTimeoutMs: z.coerce.number().int().positive().optional(),
  unhealthyMs: z.coerce.number().int().min(0).optional(),
});

/** Defaults of the fallback chain: a first token slower than this fails over; a failed provider rests this long. */
export const LLM_FALLBACK_DEFAULTS = { ttftTimeoutMs: 1_500, unhealthyMs: 30_000 } as const;

/**
 * Builds the LLM a stage uses from env. `${prefix}LLM_PROVIDER` names a preset (openai, groq, cerebras, ollama,
 * vllm, llamacpp, compatible; default: compatible when `LLM_BASE_URL` is set, else openai) that gives the base URL,
 * the key variable (OPENAI_API_KEY, GROQ_API_KEY, CEREBRAS_API_KEY) and which optional fields the server takes.
 * `${prefix}LLM_MODEL` is required; `${prefix}LLM_BASE_URL`, `…_API_KEY`, `…_TIMEOUT_MS`, `…_MAX_RETRIES`,
 * `…_MAX_TOKENS_FIELD`, `…_PROMPT_CACHE_KEY`, `…_STREAM_USAGE` override the preset. `${prefix}LLM_FALLBACK`
 * (`groq:llama-3.1-8b-instant,ollama:llama3.2:1b`) adds providers tried in order when the one before fails or its
 * first token is slower than `${prefix}LLM_TTFT_TIMEOUT_MS`; a failed one rests `${prefix}LLM_UNHEALTHY_MS`.
 * A prefixed variable that is unset falls back to the unprefixed one. Keys are never part of an error message.
 */
export function llmFromEnv(env: NodeJS.ProcessEnv, prefix: LlmEnvPrefix = ''): LLM {
  const read = (name: string): string | undefined => {
    // Empty counts as unset: compose files often carry `FOO=` placeholders.
    const value = env[prefix + name] || env[name];
    return value ? value : undefined;
  };
  const raw = Object.fromEntries(Object.entries(VARS).map(([field, name]) => [field, read(name)]));
  const parsed = LlmEnv.safeParse(raw);
  const fail = (problems: string[]): never => {
    throw new Error(`invalid ${prefix}LLM config: ${problems.join('; ')}`);
  };
  const where = (name: string) => (prefix ? `${prefix}${name} (or ${name})` : name);
  if (!parsed.success) {
    fail(
      parsed.error.issues.map((issue) => {
        const name = VARS[issue.path[0] as keyof typeof VARS] ?? String(issue.path[0]);
        return `${where(name)} ${issue.message}`;
      }),
    );
  }
  const cfg = parsed.data!;
  const presetName: LlmPresetName = cfg.provider ?? (cfg.baseURL ? 'compatible' : 'openai');

  const build = (name: LlmPresetName, model: string, own: boolean): OpenAICompatibleLLM => {
    const preset: LlmPreset = LLM_PRESETS[name];
    // The primary takes the LLM_* overrides; a fallback takes its preset, its own <NAME>_BASE_URL and key var.
    const baseURL = (own ? cfg.baseURL : undefined) ?? env[`${name.toUpperCase()}_BASE_URL`] ?? preset.baseURL;
    if (!baseURL)
      fail([`${own ? where(VARS.baseURL) : `${name.toUpperCase()}_BASE_URL`} is required for provider ${name}`]);
    const keyVar = preset.keyVar;
    const apiKey = (own ? cfg.apiKey : undefined) ?? (keyVar ? env[keyVar] || undefined : undefined);
    if (keyVar && !apiKey) {
      fail([`${own ? `${where(VARS.apiKey)} or ${keyVar}` : keyVar} is required for provider ${name}`]);
    }
    return new OpenAICompatibleLLM({
      provider: name === 'compatible' ? 'openai' : name,
      baseURL,
      apiKey: apiKey ?? 'not-needed',
      model,
      ...(cfg.timeoutMs === undefined ? {} : { timeoutMs: cfg.timeoutMs }),
      ...(cfg.maxRetries === undefined ? {} : { maxRetries: cfg.maxRetries }),
      maxTokensField: (own ? cfg.maxTokensField : undefined) ?? preset.maxTokensField,
      promptCacheKey: (own ? cfg.promptCacheKey : undefined) ?? preset.promptCacheKey,
      streamUsage: (own ? cfg.streamUsage : undefined) ?? preset.streamUsage,
    });
  };

  const primary = build(presetName, cfg.model, true);
  if (!cfg.fallback) return primary;
  const chain = cfg.fallback.split(',').map((entry) => {
    const at = entry.indexOf(':');
    const name = entry.slice(0, at);
    if (!(LLM_PRESET_NAMES as string[]).includes(name)) {
      fail([`${where(VARS.fallback)}: unknown provider ${name} (known: ${LLM_PRESET_NAMES.join(', ')})`]);
    }
    return build(name as LlmPresetName, entry.slice(at + 1), false);
  });
  return new FallbackLLM([primary, ...chain], {
    ttftTimeoutMs: cfg.ttftTimeoutMs ?? LLM_FALLBACK_DEFAULTS.ttftTimeoutMs,
    unhealthyMs: cfg.unhealthyMs ?? LLM_FALLBACK_DEFAULTS.unhealthyMs,
  });
}
