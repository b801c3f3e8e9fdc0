export {
  startLocalLlmServer,
  LOCAL_MODEL_ID,
  type LocalLlmServer,
  type LocalLlmServerOptions,
  type LocalLlmStats,
} from './server.js';
export { composeReply, roleFromSystemPrompt, wordTokens, type BrainMessage, type BrainRole } from './brain.js';
