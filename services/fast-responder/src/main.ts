import { runService } from '@va/actor';
import { llmFromEnv } from '@va/providers';
import { fastResponder, STAGE } from './actor.js';

// FAST_LLM_* (base URL, key, model) choose the small model; see README.
const llm = await llmFromEnv(process.env, 'FAST_');
await runService({ stage: STAGE, createActor: fastResponder(llm) });
