import { basename } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { McpServerSpec } from '@va/protocol';
import type { Context, Logger } from '@va/telemetry';
import type { RemoteTool } from './remote.js';

/** What a tool source answers (the same shape tool services answer). */
type Reply = { result: unknown } | { error: string };

/** Why an MCP server is not used: its command is not one the deep responder may start. */
export class McpNotAllowedError extends Error {
  override readonly name = 'McpNotAllowedError';
}

export interface McpOptions {
  /** Commands a profile's stdio servers may run (by name, e.g. `npx,node`): anything else is refused. */
  allowedCommands: readonly string[];
  log?: Logger;
}

/** One MCP server connection, shared by every session whose agent names the same server. */
class McpConnection {
  tools: RemoteTool[] = [];
  readonly ready: Promise<void>;
  private readonly client = new Client({ name: 'voice-agent-deep-responder', version: '0.1.0' });
  closed = false;

  constructor(
    readonly spec: McpServerSpec,
    private readonly log?: Logger,
  ) {
    this.ready = this.connect();
    this.ready.catch(() => undefined);
  }

  private async connect(): Promise<void> {
    const transport =
      this.spec.transport === 'stdio'
        ? new StdioClientTransport({
            command: this.spec.command,
            args: this.spec.args,
            // The server's own variables only, on top of a minimal environment (no keys of this process).
            env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...this.spec.env },
            stderr: 'ignore',
          })
        : new StreamableHTTPClientTransport(new URL(this.spec.url));
    this.client.onclose = () => {
      this.closed = true;
    };
    await this.client.connect(transport);
    const { tools } = await this.client.listTools();
    this.tools = tools.map((t) => ({
      name: t.name,
      description: t.description ?? t.name,
      parameters: t.inputSchema as Record<string, unknown>,
      subject: `mcp:${this.spec.name}`,
    }));
    this.log?.info({ mcp: this.spec.name, tools: this.tools.map((t) => t.name) }, 'mcp server connected');
  }

  async call(name: string, args: string, opts: { signal: AbortSignal; timeoutMs: number }): Promise<Reply> {
    let parsed: Record<string, unknown>;
    try {
      const value = args.trim() === '' ? {} : (JSON.parse(args) as unknown);
      if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('not an object');
      parsed = value as Record<string, unknown>;
    } catch (err) {
      return { error: `bad arguments for ${name}: ${(err as Error).message}` };
    }
    try {
      const res = await this.client.callTool({ name, arguments: parsed }, undefined, {
        signal: opts.signal,
        timeout: opts.timeoutMs,
      });
      const text = (res.content as { type: string; text?: string }[] | undefined)
        ?.filter((c) => c.type === 'text')
        .map((c) => c.text ?? '')
        .join('\n');
      const result = res.structuredContent ?? text ?? null;
      return res.isError
        ? { error: `${name} failed: ${typeof result === 'string' ? result : JSON.stringify(result)}` }
        : { result };
    } catch (err) {
      if (opts.signal.aborted) return { error: 'cancelled' };
      const message = err instanceof Error ? err.message : String(err);
      if (/timed out|timeout/i.test(message)) return { error: `${name} timed out after ${opts.timeoutMs} ms` };
      return { error: `${name} failed: ${message}` };
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.client.close().catch(() => undefined);
  }
}

/**
 * The MCP servers of the agents this deep responder runs: one connection per distinct server, shared by the
 * sessions that name it, made again after the server died. Stdio servers only with an allowed command.
 */
export class McpServers {
  private readonly connections = new Map<string, McpConnection>();

  constructor(private readonly opts: McpOptions) {}

  /** The connection to a server, connecting (again) if there is none or it closed. */
  connection(spec: McpServerSpec): McpConnection {
    if (spec.transport === 'stdio' && !this.opts.allowedCommands.includes(basename(spec.command))) {
      throw new McpNotAllowedError(
        `MCP server ${spec.name}: command ${JSON.stringify(spec.command)} is not in MCP_STDIO_COMMANDS`,
      );
    }
    const key = JSON.stringify(spec);
    let conn = this.connections.get(key);
    if (!conn || conn.closed) {
      conn = new McpConnection(spec, this.opts.log);
      this.connections.set(key, conn);
      conn.ready.catch((err: unknown) => {
        this.opts.log?.warn({ mcp: spec.name, err: String(err) }, 'mcp server did not start');
        this.connections.delete(key);
      });
    }
    return conn;
  }

  /** The tools of one agent's servers, as a tool source for its sessions' registry. */
  forAgent(specs: readonly McpServerSpec[]): McpTools {
    return new McpTools(this, specs, this.opts.log);
  }

  async close(): Promise<void> {
    await Promise.all([...this.connections.values()].map((c) => c.close()));
    this.connections.clear();
  }
}

/** One session's MCP tools: its agent's servers' tools (the first server to name a tool wins). */
export class McpTools {
  constructor(
    private readonly servers: McpServers,
    private readonly specs: readonly McpServerSpec[],
    private readonly log?: Logger,
  ) {
    // Connect now, so the tools are known by the first turn.
    for (const spec of specs) this.connectionOf(spec);
  }

  private connectionOf(spec: McpServerSpec): McpConnection | undefined {
    try {
      return this.servers.connection(spec);
    } catch (err) {
      this.log?.warn({ mcp: spec.name, err: String(err) }, 'mcp server refused');
      return undefined;
    }
  }

  /** Resolves once every server answered (or failed): tests and the first turn. */
  async ready(): Promise<void> {
    await Promise.all(this.specs.map((s) => this.connectionOf(s)?.ready.catch(() => undefined)));
  }

  list(): RemoteTool[] {
    const seen = new Set<string>();
    const out: RemoteTool[] = [];
    for (const spec of this.specs) {
      for (const t of this.connectionOf(spec)?.tools ?? []) {
        if (seen.has(t.name)) continue;
        seen.add(t.name);
        out.push(t);
      }
    }
    return out;
  }

  async call(
    name: string,
    args: string,
    opts: { signal: AbortSignal; timeoutMs: number; context?: Context },
  ): Promise<Reply> {
    for (const spec of this.specs) {
      const conn = this.connectionOf(spec);
      if (conn?.tools.some((t) => t.name === name)) return conn.call(name, args, opts);
    }
    return { error: `there is no tool named ${name}` };
  }
}
