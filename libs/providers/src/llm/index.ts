import { registerProvider } from '../registry.js';
import { presetLLM } from './env.js';
import { LLM_PRESET_NAMES } from './presets.js';
import { FakeLLM } from './fake.js';

export {
  OpenAICompatibleLLM,
  OPENAI_DEFAULT_BASE_URL,
  toProviderError,
  type OpenAICompatibleLLMOptions,
} from './openai-compatible.js';
export { llmFromEnv, presetLLM, scopedEnv, type LlmEnvPrefix } from './env.js';
export { LLM_PRESETS, LLM_PRESET_NAMES, type LlmPreset, type LlmPresetName } from './presets.js';
export { FallbackLLM, type FallbackLLMOptions } from './fallback.js';
export { FakeLLM, FAKE_LLM_DEFAULT_REPLY, type FakeLLMOptions, type FakeLLMReply } from './fake.js';

// Every preset is an OpenAI-compatible server (OpenAI, Groq, Cerebras, Ollama, vLLM, llama.cpp, local-llm).
for (const name of LLM_PRESET_NAMES) registerProvider('llm', name, (env, slot) => presetLLM(name, env, slot));
registerProvider('llm', 'fake', () => new FakeLLM());
