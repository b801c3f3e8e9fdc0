import { runService } from '@va/actor';
import { llmFromEnv } from '@va/providers';
import { deepResponder, STAGE } from './actor.js';

// DEEP_LLM_* (base URL, key, model) choose the large model; see README.
const llm = await llmFromEnv(process.env, 'DEEP_');
await runService({ stage: STAGE, createActor: deepResponder(llm) });
