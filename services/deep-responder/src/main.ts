import { runService } from '@va/actor';
import { llmFromEnv } from '@va/providers';
import { prepareResponder, toolsFromEnv, type RemoteToolSource } from '@va/responder';
import { createLogger } from '@va/telemetry';
import { McpServers, RemoteTools } from '@va/tools';
import { deepResponder, STAGE } from './actor.js';

// DEEP_LLM_* (base URL, key, model) choose the large model; TOOLS / TOOL_TIMEOUT_MS its built-in tools; tool
// services on the bus are found as they start and stop (TOOL_DISCOVERY_MS, default 2000); see README.
const llm = await llmFromEnv(process.env, 'DEEP_');
// The bus exists once the service runs; until then (before any session) there are no tool services to offer.
const found: { remote?: RemoteTools } = {};
const toolServices: RemoteToolSource = {
  list: () => found.remote?.list() ?? [],
  call: (name, args, opts) =>
    found.remote?.call(name, args, opts) ?? Promise.resolve({ error: `${name} is not running` }),
};
// MCP servers named by agent profiles; a stdio server runs only a command listed here (e.g. `npx,node`).
const mcp = new McpServers({
  allowedCommands: (process.env.MCP_STDIO_COMMANDS ?? '')
    .split(',')
    .map((c) => c.trim())
    .filter(Boolean),
  log: createLogger(STAGE),
});
const { bus } = await runService({
  stage: STAGE,
  createActor: deepResponder(llm, toolsFromEnv(process.env, toolServices), (servers) => mcp.forAgent(servers)),
  prepare: prepareResponder,
});
const everyMs = Number(process.env.TOOL_DISCOVERY_MS ?? 2_000);
found.remote = new RemoteTools(bus, { discoverEveryMs: everyMs > 0 ? everyMs : 2_000, log: bus.log }).start();
