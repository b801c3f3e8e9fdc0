import { z } from 'zod';
import { FallbackSTT, FallbackTTS } from './fallback-streams.js';
import type { FailoverEvent } from './failover.js';
import { createProvider } from './registry.js';
import type { STT, TTS } from './types.js';

export const CHAIN_DEFAULTS = {
  /** TTS: a provider whose first audio is later than this after its first text is abandoned for the next. */
  ttfbTimeoutMs: 1_500,
  /** A failed provider is tried after the others for this long. */
  unhealthyMs: 30_000,
} as const;

const ChainEnv = z.object({
  PROVIDER_TTFB_TIMEOUT_MS: z.coerce.number().int().positive().default(CHAIN_DEFAULTS.ttfbTimeoutMs),
  PROVIDER_UNHEALTHY_MS: z.coerce.number().int().min(0).default(CHAIN_DEFAULTS.unhealthyMs),
});

/**
 * The STT or TTS a service uses, from its `*_PROVIDER` value: one name (`deepgram`), or an ordered fallback chain
 * (`deepgram,local`): each provider is built from env by the registry; with more than one, failures and slow
 * first audio move to the next (`PROVIDER_TTFB_TIMEOUT_MS`, `PROVIDER_UNHEALTHY_MS`).
 */
export function providerChain(
  kind: 'stt',
  spec: string,
  env: NodeJS.ProcessEnv,
  onFailover?: (event: FailoverEvent) => void,
): Promise<STT>;
export function providerChain(
  kind: 'tts',
  spec: string,
  env: NodeJS.ProcessEnv,
  onFailover?: (event: FailoverEvent) => void,
): Promise<TTS>;
export async function providerChain(
  kind: 'stt' | 'tts',
  spec: string,
  env: NodeJS.ProcessEnv,
  onFailover?: (event: FailoverEvent) => void,
): Promise<STT | TTS> {
  const names = spec
    .split(',')
    .map((n) => n.trim())
    .filter(Boolean);
  if (names.length === 0) throw new Error(`no ${kind} provider named`);
  const made = await Promise.all(names.map((name) => createProvider(kind, name, env)));
  if (made.length === 1) return made[0]!;
  const cfg = ChainEnv.parse(env);
  const common = { unhealthyMs: cfg.PROVIDER_UNHEALTHY_MS, ...(onFailover ? { onFailover } : {}) };
  return kind === 'stt'
    ? new FallbackSTT(made as STT[], common)
    : new FallbackTTS(made as TTS[], { ...common, ttfbTimeoutMs: cfg.PROVIDER_TTFB_TIMEOUT_MS });
}
