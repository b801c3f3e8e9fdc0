import { parseEnv, runService } from '@va/actor';
import { BUCKETS } from '@va/protocol';
import { createLogger } from '@va/telemetry';
import { contextActor } from './actor.js';
import { serveContext } from './context-server.js';
import { ContextEnv, STAGE } from './options.js';
import { summarizerFromEnv } from './summarizer.js';

const options = parseEnv(ContextEnv);
const summarizer = await summarizerFromEnv(process.env, options, createLogger(STAGE));

const { bus } = await runService({ stage: STAGE, createActor: contextActor({ ...options, summarizer }) });

// ctx.get is answered by any instance (queue group), from its in-memory copy of every session's history.
await serveContext(bus, { stage: STAGE, leases: await bus.kv(BUCKETS.leases) });
