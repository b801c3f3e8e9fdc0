import { runService } from '@va/actor';
import { llmFromEnv } from '@va/providers';
import { prepareResponder } from '@va/responder';
import { fastResponder, STAGE } from './actor.js';

// FAST_LLM_* (base URL, key, model) choose the small model; see README.
const llm = await llmFromEnv(process.env, 'FAST_');
// History comes from a replica opened before the first session is claimed (see prepareResponder).
await runService({ stage: STAGE, createActor: fastResponder(llm), prepare: prepareResponder });
