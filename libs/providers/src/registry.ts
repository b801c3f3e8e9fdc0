import type { EndOfUtteranceModel, LLM, ProviderKind, STT, TTS, VAD } from './types.js';

/** What a provider of each kind is. */
export interface ProviderOf {
  stt: STT;
  llm: LLM;
  tts: TTS;
  vad: VAD;
  eou: EndOfUtteranceModel;
}

/** Where in a chain (`PROVIDER=a:model,b`) a provider is built. */
export interface ProviderSlot {
  /** The model named after its colon (`groq:llama-3.1-8b-instant`), if any. */
  model?: string;
  /** The chain's first provider: the one its kind's own overrides (`LLM_BASE_URL`, `LLM_API_KEY`…) are for. */
  first: boolean;
}

/** Options come from the service's environment; each factory parses what it needs (zod) and says what is wrong. */
export type ProviderFactory<K extends ProviderKind> = (
  env: NodeJS.ProcessEnv,
  slot: ProviderSlot,
) => ProviderOf[K] | Promise<ProviderOf[K]>;

const factories: { [K in ProviderKind]: Map<string, ProviderFactory<K>> } = {
  stt: new Map(),
  llm: new Map(),
  tts: new Map(),
  vad: new Map(),
  eou: new Map(),
};

/** Providers are chosen by name from config (`STT_PROVIDER=deepgram`), never by if-chains in actors. */
export function registerProvider<K extends ProviderKind>(kind: K, name: string, factory: ProviderFactory<K>): void {
  (factories[kind] as Map<string, ProviderFactory<K>>).set(name, factory);
}

/** No provider of that name is registered for the kind: a configuration error (never failed over). */
export class UnknownProviderError extends Error {
  override readonly name = 'UnknownProviderError';
}

export async function createProvider<K extends ProviderKind>(
  kind: K,
  name: string,
  env: NodeJS.ProcessEnv = process.env,
  slot: ProviderSlot = { first: true },
): Promise<ProviderOf[K]> {
  const factory = (factories[kind] as Map<string, ProviderFactory<K>>).get(name);
  if (!factory) {
    const known = [...factories[kind].keys()].join(', ') || 'none';
    throw new UnknownProviderError(`unknown ${kind} provider "${name}" (known: ${known})`);
  }
  return factory(env, slot);
}

export function providerNames(kind: ProviderKind): string[] {
  return [...factories[kind].keys()];
}
