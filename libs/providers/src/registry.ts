import type { EndOfUtteranceModel, LLM, ProviderKind, STT, TTS, VAD } from './types.js';

interface Made {
  stt: STT;
  llm: LLM;
  tts: TTS;
  vad: VAD;
  eou: EndOfUtteranceModel;
}

/** Options come from the service's environment; each factory parses what it needs (zod) and says what is wrong. */
export type ProviderFactory<K extends ProviderKind> = (env: NodeJS.ProcessEnv) => Made[K] | Promise<Made[K]>;

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

export async function createProvider<K extends ProviderKind>(
  kind: K,
  name: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<Made[K]> {
  const factory = (factories[kind] as Map<string, ProviderFactory<K>>).get(name);
  if (!factory) {
    const known = [...factories[kind].keys()].join(', ') || 'none';
    throw new Error(`unknown ${kind} provider "${name}" (known: ${known})`);
  }
  return factory(env);
}

export function providerNames(kind: ProviderKind): string[] {
  return [...factories[kind].keys()];
}
