import { runService } from '@va/actor';
import { llmFromEnv } from '@va/providers';
import { prepareResponder, toolsFromEnv } from '@va/responder';
import { deepResponder, STAGE } from './actor.js';

// DEEP_LLM_* (base URL, key, model) choose the large model; TOOLS / TOOL_TIMEOUT_MS its tools; see README.
const llm = await llmFromEnv(process.env, 'DEEP_');
await runService({
  stage: STAGE,
  createActor: deepResponder(llm, toolsFromEnv(process.env)),
  prepare: prepareResponder,
});
