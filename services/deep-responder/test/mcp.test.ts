import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { channels, type ChatMessage, type McpServerSpec, type Reply } from '@va/protocol';
import { FakeLLM, type LLMOptions } from '@va/providers';
import { toolsFromEnv } from '@va/responder';
import { startStagesInProcess, waitFor, type InProcessStages } from '@va/testkit';
import { McpServers } from '@va/tools';
import { deepResponder } from '../src/actor.js';

// The real MCP server from the npm registry, started over stdio by the deep responder's MCP client.
const MEMORY_SERVER = createRequire(import.meta.url).resolve('@modelcontextprotocol/server-memory/dist/index.js');
const CRASHING_SERVER = fileURLToPath(new URL('./fixtures/crashing-mcp-server.mjs', import.meta.url));
const ENTITY = { name: 'Camille', entityType: 'person', observations: ['books tables at Chez Nous'] };

/** Calls the memory server's tool when offered, then reads back what it answered. */
const llm = new FakeLLM({
  reply: (messages: readonly ChatMessage[], opts: LLMOptions) => {
    const result = messages.find((m) => m.role === 'tool');
    if (result) return `Stored: ${result.content}`;
    if (opts.tools?.some((t) => t.name === 'crash')) return { toolCalls: [{ name: 'crash', arguments: '{}' }] };
    if (opts.tools?.some((t) => t.name === 'shout'))
      return { toolCalls: [{ name: 'shout', arguments: '{"words":"bonjour"}' }] };
    return opts.tools?.some((t) => t.name === 'create_entities')
      ? { toolCalls: [{ name: 'create_entities', arguments: JSON.stringify({ entities: [ENTITY] }) }] }
      : 'No tools.';
  },
});

let stages: InProcessStages;
let mcp: McpServers;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'va-mcp-'));
  mcp = new McpServers({ allowedCommands: ['node'] });
  stages = await startStagesInProcess([
    {
      stage: 'deep-responder',
      createActor: deepResponder(llm, toolsFromEnv({ TOOLS: '' }), (servers) => mcp.forAgent(servers)),
    },
  ]);
});

afterAll(async () => {
  await stages?.stop();
  await mcp?.close();
  await rm(dir, { recursive: true, force: true });
});

async function ask(id: string, mcpServers: McpServerSpec[]): Promise<string> {
  const sid = await stages.open(id, {
    agent: { name: 'memo', instructions: 'Remember things.', tools: [], mcpServers },
  });
  const got: Reply[] = [];
  stages.client.subscribe(channels.replyDeep, sid, (r) => void got.push(r));
  await stages.client.nc.flush();
  // The server is started at session open; give it its moment before the turn, as a user's first words would.
  await mcp.forAgent(mcpServers).ready();
  stages.client.publish(channels.turn, sid, {
    turnId: 'q1',
    kind: 'end',
    text: 'remember Camille',
    eouProb: 1,
    speechEndMs: 0,
  });
  await waitFor(() => got.at(-1)?.done === true, { message: 'the answer', timeoutMs: 15_000 });
  return got.map((r) => r.delta).join('');
}

describe('MCP servers of an agent profile (@modelcontextprotocol/server-memory over stdio)', () => {
  it('offers the server’s tools to the model, and the model gets the server’s real result', async () => {
    const memory: McpServerSpec = {
      name: 'memory',
      transport: 'stdio',
      command: process.execPath,
      args: [MEMORY_SERVER],
      env: { MEMORY_FILE_PATH: join(dir, 'memory.jsonl') },
    };
    const answer = await ask('mcp-1', [memory]);
    // The memory server answers with the entities it created (its own JSON, as MCP text content).
    expect(answer).toMatch(/^Stored: /);
    expect(answer).toContain('Camille');
    expect(answer).toContain('books tables at Chez Nous');
    const tools = mcp
      .forAgent([memory])
      .list()
      .map((t) => t.name);
    expect(tools).toEqual(expect.arrayContaining(['create_entities', 'read_graph', 'search_nodes']));
  });

  it('refuses a stdio server whose command is not allowed, and the session goes on without it', async () => {
    const answer = await ask('mcp-2', [
      { name: 'shell', transport: 'stdio', command: 'bash', args: ['-c', 'echo hi'] },
    ]);
    expect(answer).toBe('No tools.');
  });

  it('a server that dies mid-call: the model reads an error, the session goes on, the next call starts it again', async () => {
    const crashing: McpServerSpec = {
      name: 'crashing',
      transport: 'stdio',
      command: process.execPath,
      args: [CRASHING_SERVER],
    };
    const first = await ask('mcp-3', [crashing]);
    expect(first).toMatch(/^Stored: \{"error":"crash failed: .*(closed|Connection)/i);
    // The connection is made again for the next session (or turn) that needs it.
    const second = await ask('mcp-4', [crashing]);
    expect(second).toMatch(/^Stored: \{"error":"crash failed/);
  });

  it('a streamable-HTTP server (the SDK’s own, stateless) is used the same way', async () => {
    const http = createServer((req, res) => void serveMcp(req, res));
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', () => r()));
    try {
      const { port } = http.address() as AddressInfo;
      const answer = await ask('mcp-5', [{ name: 'shouter', transport: 'http', url: `http://127.0.0.1:${port}/mcp` }]);
      expect(answer).toBe('Stored: "BONJOUR"');
    } finally {
      http.closeAllConnections();
      await new Promise((r) => http.close(r));
    }
  });
});

/** One stateless MCP exchange per HTTP request (the SDK's server and transport). */
async function serveMcp(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const server = new McpServer({ name: 'shouter', version: '0.0.1' });
  server.registerTool(
    'shout',
    { description: 'Says the words louder.', inputSchema: { words: z.string() } },
    async ({ words }) => ({ content: [{ type: 'text', text: words.toUpperCase() }] }),
  );
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
  res.on('close', () => {
    void transport.close();
    void server.close();
  });
  await server.connect(transport);
  let body = '';
  for await (const chunk of req) body += String(chunk);
  await transport.handleRequest(req, res, body ? (JSON.parse(body) as unknown) : undefined);
}
