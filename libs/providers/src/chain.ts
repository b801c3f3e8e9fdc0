import { z } from 'zod';
import { FallbackSTT, FallbackTTS } from './fallback-streams.js';
import { errorMessage, type FailoverEvent } from './failover.js';
import { FallbackLLM } from './llm/fallback.js';
import { createProvider, UnknownProviderError, type ProviderOf } from './registry.js';
import type { ProviderKind } from './types.js';

export const CHAIN_DEFAULTS = {
  /** A provider whose first output (audio, token) is later than this after its input is abandoned for the next. */
  firstOutputTimeoutMs: 1_500,
  /** A failed provider is tried after the others for this long. */
  unhealthyMs: 30_000,
} as const;

const budget = (fallback: number) => z.coerce.number().int().positive().default(fallback);
const rest = (fallback: number) => z.coerce.number().int().min(0).default(fallback);
/** The chain's budgets. LLMs keep their own names (`LLM_TTFT_TIMEOUT_MS`, `LLM_UNHEALTHY_MS`, prefixed per stage). */
const ChainEnv = z.object({
  PROVIDER_TTFB_TIMEOUT_MS: budget(CHAIN_DEFAULTS.firstOutputTimeoutMs),
  PROVIDER_UNHEALTHY_MS: rest(CHAIN_DEFAULTS.unhealthyMs),
  LLM_TTFT_TIMEOUT_MS: budget(CHAIN_DEFAULTS.firstOutputTimeoutMs),
  LLM_UNHEALTHY_MS: rest(CHAIN_DEFAULTS.unhealthyMs),
});

/** One entry of a chain spec: `name` or `name:model` (the model may itself hold colons: `ollama:llama3.2:1b`). */
export interface ChainEntry {
  name: string;
  model?: string;
}

export function parseChainSpec(kind: ProviderKind, spec: string): ChainEntry[] {
  const entries = spec
    .split(',')
    .map((e) => e.trim())
    .filter(Boolean)
    .map((e) => {
      const at = e.indexOf(':');
      return at < 0 ? { name: e } : { name: e.slice(0, at), model: e.slice(at + 1) };
    });
  if (entries.length === 0) throw new Error(`no ${kind} provider named`);
  return entries;
}

/**
 * The provider of any kind a service uses, from its `*_PROVIDER` value: one name (`deepgram`), or an ordered
 * fallback chain (`deepgram,local`; `groq:llama-3.1-8b-instant,ollama:llama3.2:1b` for LLMs). Each provider is
 * built from env by the registry. With more than one:
 * - stt, tts, llm fail over at run time on the one failover core (`failover.ts`): an error before the first
 *   output, a first output later than `PROVIDER_TTFB_TIMEOUT_MS` (`LLM_TTFT_TIMEOUT_MS`), a provider set aside
 *   for `PROVIDER_UNHEALTHY_MS` (`LLM_UNHEALTHY_MS`) after it failed;
 * - vad and eou run in process and either load or not: the first that builds is used (`silero,energy`: the
 *   energy detector when the Silero model cannot be loaded), each one passed over reported as a failover.
 */
export async function providerChain<K extends ProviderKind>(
  kind: K,
  spec: string,
  env: NodeJS.ProcessEnv,
  onFailover?: (event: FailoverEvent) => void,
): Promise<ProviderOf[K]> {
  const entries = parseChainSpec(kind, spec);
  if (kind === 'vad' || kind === 'eou') return firstThatBuilds(kind, entries, env, onFailover);
  const made = await Promise.all(
    entries.map((e, i) =>
      createProvider(kind, e.name, env, { ...(e.model ? { model: e.model } : {}), first: i === 0 }),
    ),
  );
  if (made.length === 1) return made[0]!;
  const build = FALLBACKS[kind as RuntimeChainKind] as unknown as FallbackBuilder<K>;
  return build(made, ChainEnv.parse(env), onFailover ? { onFailover } : {});
}

type RuntimeChainKind = 'stt' | 'tts' | 'llm';
type FallbackBuilder<K extends ProviderKind> = (
  made: ProviderOf[K][],
  cfg: z.infer<typeof ChainEnv>,
  common: { onFailover?: (event: FailoverEvent) => void },
) => ProviderOf[K];

/** Each kind's fallback over the one failover core, with its budgets from env. */
const FALLBACKS: { [K in RuntimeChainKind]: FallbackBuilder<K> } = {
  stt: (made, cfg, common) => new FallbackSTT(made, { ...common, unhealthyMs: cfg.PROVIDER_UNHEALTHY_MS }),
  tts: (made, cfg, common) =>
    new FallbackTTS(made, {
      ...common,
      unhealthyMs: cfg.PROVIDER_UNHEALTHY_MS,
      ttfbTimeoutMs: cfg.PROVIDER_TTFB_TIMEOUT_MS,
    }),
  llm: (made, cfg, common) =>
    new FallbackLLM(made, { ...common, unhealthyMs: cfg.LLM_UNHEALTHY_MS, ttftTimeoutMs: cfg.LLM_TTFT_TIMEOUT_MS }),
};

async function firstThatBuilds<K extends ProviderKind>(
  kind: K,
  entries: ChainEntry[],
  env: NodeJS.ProcessEnv,
  onFailover?: (event: FailoverEvent) => void,
): Promise<ProviderOf[K]> {
  const problems: string[] = [];
  for (const [i, e] of entries.entries()) {
    try {
      return await createProvider(kind, e.name, env, { ...(e.model ? { model: e.model } : {}), first: i === 0 });
    } catch (error) {
      // A name nobody registered is a configuration error, not a provider to fail over from.
      if (error instanceof UnknownProviderError) throw error;
      problems.push(`${e.name}: ${errorMessage(error)}`);
      onFailover?.({ provider: e.name, reason: 'error', error });
    }
  }
  throw new Error(`no ${kind} provider could be built (${problems.join('; ')})`);
}
