#!/usr/bin/env node
/**
 * `va-local-llm --port N --ttft-ms N --tps N [--host H]` (or LOCAL_LLM_PORT, LOCAL_LLM_TTFT_MS, LOCAL_LLM_TPS,
 * LOCAL_LLM_HOST). Prints one JSON line `{"event":"listening","url":...}` once it accepts requests, so scripts
 * can read the URL; stops cleanly on SIGTERM/SIGINT.
 */
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { startLocalLlmServer } from './server.js';

const Config = z.object({
  host: z.string().min(1).default('127.0.0.1'),
  port: z.coerce.number().int().min(0).max(65_535).default(0),
  ttftMs: z.coerce.number().min(0).default(150),
  tokensPerSecond: z.coerce.number().positive().default(60),
});

function readConfig(): z.infer<typeof Config> {
  const { values } = parseArgs({
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      'ttft-ms': { type: 'string' },
      tps: { type: 'string' },
    },
    strict: true,
  });
  const env = process.env;
  // Empty env values count as unset; flags win over env.
  const pick = (flag: string | undefined, name: string) => flag ?? (env[name] || undefined);
  return Config.parse({
    host: pick(values.host, 'LOCAL_LLM_HOST'),
    port: pick(values.port, 'LOCAL_LLM_PORT'),
    ttftMs: pick(values['ttft-ms'], 'LOCAL_LLM_TTFT_MS'),
    tokensPerSecond: pick(values.tps, 'LOCAL_LLM_TPS'),
  });
}

let config: z.infer<typeof Config>;
try {
  config = readConfig();
} catch (err) {
  const message = err instanceof z.ZodError ? z.prettifyError(err) : err instanceof Error ? err.message : String(err);
  process.stderr.write(`va-local-llm: ${message}\nusage: va-local-llm [--host H] [--port N] [--ttft-ms N] [--tps N]\n`);
  process.exit(2);
}

const server = await startLocalLlmServer(config);
process.stdout.write(
  `${JSON.stringify({ event: 'listening', url: server.url, port: server.port, ttftMs: config.ttftMs, tokensPerSecond: config.tokensPerSecond })}\n`,
);

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await server.stop();
  process.stdout.write(`${JSON.stringify({ event: 'stopped' })}\n`);
  process.exit(0);
};
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
