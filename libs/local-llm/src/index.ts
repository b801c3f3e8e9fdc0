export {
  startLocalLlmServer,
  LOCAL_MODEL_ID,
  type LocalLlmServer,
  type LocalLlmServerOptions,
  type LocalLlmStats,
} from './server.js';
export {
  composeReply,
  decide,
  roleFromSystemPrompt,
  wordTokens,
  type BrainDecision,
  type BrainMessage,
  type BrainRole,
  type BrainTool,
} from './brain.js';
