import { z } from 'zod';
import { OpenAICompatibleLLM } from './openai-compatible.js';

/**
 * Fast and deep responders read the same variables under their own prefix (FAST_LLM_MODEL, DEEP_LLM_MODEL);
 * session-context's summaries use SUMMARY_.
 */
export type LlmEnvPrefix = '' | 'FAST_' | 'DEEP_' | 'SUMMARY_';

/** Variable name (without prefix) for each field, so errors name what the operator must set. */
const VARS = {
  baseURL: 'LLM_BASE_URL',
  apiKey: 'LLM_API_KEY',
  model: 'LLM_MODEL',
  timeoutMs: 'LLM_TIMEOUT_MS',
  maxRetries: 'LLM_MAX_RETRIES',
  maxTokensField: 'LLM_MAX_TOKENS_FIELD',
  promptCacheKey: 'LLM_PROMPT_CACHE_KEY',
} as const;

const LlmEnv = z
  .object({
    baseURL: z.url().optional(),
    apiKey: z.string().min(1).optional(),
    model: z.string().min(1, 'is required'),
    timeoutMs: z.coerce.number().int().positive().optional(),
    maxRetries: z.coerce.number().int().min(0).max(5).optional(),
    maxTokensField: z.enum(['max_tokens', 'max_completion_tokens']).optional(),
    promptCacheKey: z.stringbool().optional(),
  })
  .superRefine((cfg, ctx) => {
    // With no base URL we talk to OpenAI itself, which needs a real key; local servers do not.
    if (cfg.baseURL === undefined && cfg.apiKey === undefined) {
      ctx.addIssue({ code: 'custom', path: ['apiKey'], message: 'is required when LLM_BASE_URL is not set (OpenAI)' });
    }
  });

/**
 * Builds the OpenAI-compatible LLM from `${prefix}LLM_BASE_URL`, `${prefix}LLM_API_KEY` (default 'not-needed'
 * when a base URL is set), `${prefix}LLM_MODEL`, and optionally `${prefix}LLM_TIMEOUT_MS`,
 * `${prefix}LLM_MAX_RETRIES`, `${prefix}LLM_MAX_TOKENS_FIELD`, `${prefix}LLM_PROMPT_CACHE_KEY` (1/0: send
 * `prompt_cache_key`; default on for OpenAI only). A prefixed variable that is unset falls back to
 * the unprefixed one, so one server and key can serve both responders with only the models differing.
 */
export function llmFromEnv(env: NodeJS.ProcessEnv, prefix: LlmEnvPrefix = ''): OpenAICompatibleLLM {
  const read = (name: string): string | undefined => {
    // Empty counts as unset: compose files often carry `FOO=` placeholders.
    const value = env[prefix + name] || env[name];
    return value ? value : undefined;
  };
  const raw = Object.fromEntries(Object.entries(VARS).map(([field, name]) => [field, read(name)]));
  const parsed = LlmEnv.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const name = VARS[issue.path[0] as keyof typeof VARS] ?? String(issue.path[0]);
      const where = prefix ? `${prefix}${name} (or ${name})` : name;
      return `${where} ${issue.message}`;
    });
    throw new Error(`invalid ${prefix}LLM config: ${problems.join('; ')}`);
  }
  const { apiKey, ...rest } = parsed.data;
  return new OpenAICompatibleLLM({ ...rest, apiKey: apiKey ?? 'not-needed' });
}
