import { z } from 'zod';
import { providerChain } from '../chain.js';
import type { FailoverEvent } from '../failover.js';
import type { ProviderSlot } from '../registry.js';
import type { LLM } from '../types.js';
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
type LlmConfig = z.infer<typeof LlmEnv>;

/** The stage's view of env: `${prefix}X` where set (and not empty: compose files carry `FOO=` placeholders), else `X`. */
export function scopedEnv(env: NodeJS.ProcessEnv, prefix: string): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(env)) if (v) out[k] = v;
  if (prefix) for (const [k, v] of Object.entries(env)) if (k.startsWith(prefix) && v) out[k.slice(prefix.length)] = v;
  return out;
}

/** The LLM config in `env` (already scoped), or an error naming the variables (`where`) and never a key. */
function readLlmEnv(env: NodeJS.ProcessEnv, where: (name: string) => string): LlmConfig {
  const raw = Object.fromEntries(Object.entries(VARS).map(([field, name]) => [field, env[name]]));
  const parsed = LlmEnv.safeParse(raw);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((issue) => {
    const name = VARS[issue.path[0] as keyof typeof VARS] ?? String(issue.path[0]);
    return `${where(name)} ${issue.message}`;
  });
  throw new Error(`invalid LLM config: ${problems.join('; ')}`);
}

/**
 * The LLM a stage uses, from env. `${prefix}LLM_PROVIDER` names a preset (openai, groq, cerebras, ollama, vllm,
 * llamacpp, compatible; default: compatible when `LLM_BASE_URL` is set, else openai) that gives the base URL, the
 * key variable (OPENAI_API_KEY, GROQ_API_KEY, CEREBRAS_API_KEY) and which optional fields the server takes.
 * `${prefix}LLM_MODEL` is required; `${prefix}LLM_BASE_URL`, `…_API_KEY`, `…_TIMEOUT_MS`, `…_MAX_RETRIES`,
 * `…_MAX_TOKENS_FIELD`, `…_PROMPT_CACHE_KEY`, `…_STREAM_USAGE` override the preset. `${prefix}LLM_FALLBACK`
 * (`groq:llama-3.1-8b-instant,ollama:llama3.2:1b`) adds providers tried in order when the one before fails or its
 * first token is slower than `${prefix}LLM_TTFT_TIMEOUT_MS`; a failed one rests `${prefix}LLM_UNHEALTHY_MS`.
 * A prefixed variable that is unset falls back to the unprefixed one. Keys are never part of an error message.
 * The variables are read into a chain spec (`preset:model,…`) built by `providerChain('llm', …)`, as every kind is.
 */
export async function llmFromEnv(
  env: NodeJS.ProcessEnv,
  prefix: LlmEnvPrefix = '',
  onFailover?: (event: FailoverEvent) => void,
): Promise<LLM> {
  const scoped = scopedEnv(env, prefix);
  const where = (name: string) => (prefix ? `${prefix}${name} (or ${name})` : name);
  let cfg: LlmConfig;
  try {
    cfg = readLlmEnv(scoped, where);
  } catch (err) {
    throw new Error(`invalid ${prefix}${(err as Error).message.slice('invalid '.length)}`);
  }
  const primary: LlmPresetName = cfg.provider ?? (cfg.baseURL ? 'compatible' : 'openai');
  for (const entry of cfg.fallback?.split(',') ?? []) {
    const name = entry.slice(0, entry.indexOf(':'));
    if (!(LLM_PRESET_NAMES as string[]).includes(name)) {
      throw new Error(
        `invalid ${prefix}LLM config: ${where(VARS.fallback)}: unknown provider ${name} (known: ${LLM_PRESET_NAMES.join(', ')})`,
      );
    }
  }
  const spec = [`${primary}:${cfg.model}`, ...(cfg.fallback ? [cfg.fallback] : [])].join(',');
  try {
    return await providerChain('llm', spec, scoped, onFailover);
  } catch (err) {
    // The presets name the unprefixed variables; say which the operator sets for this stage.
    throw new Error(
      `invalid ${prefix}LLM config: ${(err as Error).message}`.replace(/\bLLM_(API_KEY|BASE_URL)\b/g, (m) => where(m)),
    );
  }
}

/**
 * One preset's LLM (the registry's `llm` factory for each preset name). The chain's first provider takes the
 * `LLM_*` overrides; a later one its preset, its own `<NAME>_BASE_URL` and key variable.
 */
export function presetLLM(name: LlmPresetName, env: NodeJS.ProcessEnv, slot: ProviderSlot): OpenAICompatibleLLM {
  const cfg = LlmEnv.partial().parse(Object.fromEntries(Object.entries(VARS).map(([f, v]) => [f, env[v]])));
  const own = slot.first;
  const preset: LlmPreset = LLM_PRESETS[name];
  const model = slot.model ?? cfg.model;
  if (!model) throw new Error(`${VARS.model} is required`);
  const baseURL = (own ? cfg.baseURL : undefined) ?? env[`${name.toUpperCase()}_BASE_URL`] ?? preset.baseURL;
  if (!baseURL)
    throw new Error(`${own ? VARS.baseURL : `${name.toUpperCase()}_BASE_URL`} is required for provider ${name}`);
  const keyVar = preset.keyVar;
  const apiKey = (own ? cfg.apiKey : undefined) ?? (keyVar ? env[keyVar] || undefined : undefined);
  if (keyVar && !apiKey)
    throw new Error(`${own ? `${VARS.apiKey} or ${keyVar}` : keyVar} is required for provider ${name}`);
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
}
