// The service as a library (bench, tests): main.ts is only the wiring of these.
export { contextActor, HISTORY_STATE, type ContextActorOptions } from './actor.js';
export { ContextCache } from './cache.js';
export { serveContext, type ContextServer } from './context-server.js';
export {
  buildContext,
  estimateTokens,
  messageTokens,
  replyTokens,
  type HistoryDoc,
  type HistoryEntry,
} from './history.js';
export { CONTEXT_DEFAULTS, ContextEnv, STAGE, type ContextOptions } from './options.js';
export {
  extractiveSummarizer,
  llmSummarizer,
  summarizerFromEnv,
  SUMMARY_PROMPT,
  type Summarizer,
  type SummaryInput,
} from './summarizer.js';
