import { registerProvider } from '../registry.js';
import { llmFromEnv } from './env.js';
import { FakeLLM } from './fake.js';

export {
  OpenAICompatibleLLM,
  OPENAI_DEFAULT_BASE_URL,
  toProviderError,
  type OpenAICompatibleLLMOptions,
} from './openai-compatible.js';
export { llmFromEnv, LLM_FALLBACK_DEFAULTS, type LlmEnvPrefix } from './env.js';
export { LLM_PRESETS, LLM_PRESET_NAMES, type LlmPreset, type LlmPresetName } from './presets.js';
export { FallbackLLM, type FallbackLLMOptions } from './fallback.js';
export { FakeLLM, FAKE_LLM_DEFAULT_REPLY, type FakeLLMOptions, type FakeLLMReply } from './fake.js';

// `LLM_PROVIDER=openai` covers every OpenAI-compatible server (OpenAI, Groq, Cerebras, Ollama, vLLM, local-llm).
registerProvider('llm', 'openai', (env) => llmFromEnv(env, ''));
registerProvider('llm', 'fake', () => new FakeLLM());
