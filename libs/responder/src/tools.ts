import { z } from 'zod';
import type { ToolCall } from '@va/protocol';
import type { ToolSpec } from '@va/providers';
import type { Context } from '@va/telemetry';

/**
 * A function the deep responder's model may call. Arguments are checked against `args` (its JSON Schema is what
 * the model is shown); `run` gets a signal that fires on timeout or when the turn is cancelled, and returns
 * something JSON-serializable for the model to read.
 */
export interface Tool<A extends z.ZodType = z.ZodType> {
  name: string;
  description: string;
  args: A;
  /** Overrides the registry's timeout for this tool. */
  timeoutMs?: number;
  run(args: z.infer<A>, signal: AbortSignal, call: ToolCallInfo): Promise<unknown>;
  /** Words the answer ends with after this tool succeeded, instead of another model round (a handoff's greeting). */
  say?: (result: unknown) => string | undefined;
}

/** Where a call runs: the turn, and the trace context of its `tool` span. */
export interface ToolCallInfo {
  turnId?: string;
  context?: Context;
}

/** Declares a tool with its argument type inferred from the schema. */
export function defineTool<A extends z.ZodType>(tool: Tool<A>): Tool<A> {
  return tool;
}

export type ToolOutcome = 'ok' | 'error' | 'timeout' | 'unknown-tool' | 'bad-arguments' | 'cancelled';

export interface ToolResult {
  call: ToolCall;
  /** What the model reads: the tool's JSON result, or `{"error": …}`. */
  content: string;
  outcome: ToolOutcome;
  durationMs: number;
  /** What the answer ends with (see `Tool.say`). */
  say?: string;
}

export const TOOL_DEFAULTS = {
  /** A tool slower than this is abandoned; the model is told, and says sorry. */
  timeoutMs: 5_000,
  /** Results longer than this are cut: every character is prompt the model must read before speaking. */
  maxResultChars: 4_000,
} as const;

export interface ToolRegistryOptions {
  timeoutMs?: number;
  maxResultChars?: number;
}

/**
 * Tools that run elsewhere — tool services on the bus (`@va/tools` `RemoteTools`): listed as they come and go,
 * called by name with the model's JSON arguments (the service checks them), never throwing.
 */
export interface RemoteToolSource {
  list(): readonly { name: string; description: string; parameters: Record<string, unknown> }[];
  call(
    name: string,
    args: string,
    opts: { signal: AbortSignal; timeoutMs: number; context?: Context },
  ): Promise<{ result: unknown } | { error: string }>;
}

/**
 * The tools one responder offers, and how a call is run: validated, time-limited, cancellable, never throwing.
 * Local tools run in process; remote ones (tool services) are whatever is running now, so the list can change
 * from one model round to the next.
 */
export class ToolRegistry {
  readonly #tools: ReadonlyMap<string, Tool>;
  readonly #opts: Required<ToolRegistryOptions>;
  readonly #localSpecs: readonly ToolSpec[];
  readonly #remote: RemoteToolSource | undefined;
  /** The remote tools this registry may offer (an agent's list); undefined: every one running. */
  readonly #remoteAllowed: ReadonlySet<string> | undefined;
  /** A session's own tools (its agent's MCP servers): all of them offered, after the others. */
  readonly #extra: RemoteToolSource | undefined;

  constructor(
    tools: readonly Tool[],
    opts: ToolRegistryOptions = {},
    remote?: RemoteToolSource,
    remoteAllowed?: ReadonlySet<string>,
    extra?: RemoteToolSource,
  ) {
    this.#tools = new Map(tools.map((t) => [t.name, t]));
    if (this.#tools.size !== tools.length) throw new Error('tool names must be unique');
    this.#opts = { ...TOOL_DEFAULTS, ...opts };
    this.#localSpecs = tools.map((t) => {
      const { $schema: _drop, ...parameters } = z.toJSONSchema(t.args) as Record<string, unknown>;
      return { name: t.name, description: t.description, parameters };
    });
    this.#remote = remote;
    this.#remoteAllowed = remoteAllowed;
    this.#extra = extra;
  }

  /** This registry plus some local tools of a session's own (its agent's handoffs). */
  withLocal(tools: readonly Tool[]): ToolRegistry {
    return new ToolRegistry(
      [...this.#tools.values(), ...tools],
      this.#opts,
      this.#remote,
      this.#remoteAllowed,
      this.#extra,
    );
  }

  /** This registry plus a session's own tool source (its agent's MCP servers), offered whole. */
  with(extra: RemoteToolSource): ToolRegistry {
    return new ToolRegistry([...this.#tools.values()], this.#opts, this.#remote, this.#remoteAllowed, extra);
  }

  /** Which source serves a tool name now (local first, then tool services, then the session's own). */
  #sourceOf(name: string): 'local' | RemoteToolSource | undefined {
    if (this.#tools.has(name)) return 'local';
    if (this.#remoteTools().some((t) => t.name === name)) return this.#remote;
    if (this.#extraTools().some((t) => t.name === name)) return this.#extra;
    return undefined;
  }

  #extraTools(): ReturnType<RemoteToolSource['list']> {
    if (!this.#extra) return [];
    const taken = new Set([...this.#tools.keys(), ...this.#remoteTools().map((t) => t.name)]);
    return this.#extra.list().filter((t) => !taken.has(t.name));
  }

  /** The remote tools offered now (a local tool of the same name wins). */
  #remoteTools(): ReturnType<RemoteToolSource['list']> {
    if (!this.#remote) return [];
    return this.#remote
      .list()
      .filter((t) => !this.#tools.has(t.name) && (!this.#remoteAllowed || this.#remoteAllowed.has(t.name)));
  }

  /** What the model is shown now: the local tools, then the tool services running. */
  get specs(): readonly ToolSpec[] {
    const others = [...this.#remoteTools(), ...this.#extraTools()];
    if (others.length === 0) return this.#localSpecs;
    return [
      ...this.#localSpecs,
      ...others.map((t) => ({ name: t.name, description: t.description, parameters: t.parameters })),
    ];
  }

  get size(): number {
    return this.#tools.size + this.#remoteTools().length + this.#extraTools().length;
  }

  /** Tools may come and go (tool services, MCP servers): offer them even when there are none yet. */
  get dynamic(): boolean {
    return this.#remote !== undefined || this.#extra !== undefined;
  }

  /** The tools of this registry an agent may use (`AgentProfile.tools`), with the same options. */
  only(names: readonly string[]): ToolRegistry {
    const allowed = new Set(names);
    return new ToolRegistry(
      [...this.#tools.values()].filter((t) => allowed.has(t.name)),
      this.#opts,
      this.#remote,
      allowed,
      this.#extra,
    );
  }

  timeoutOf(name: string): number {
    return this.#tools.get(name)?.timeoutMs ?? this.#opts.timeoutMs;
  }

  /** Runs one call. Failures become an `{"error": …}` result the model can speak about; nothing is thrown. */
  async call(call: ToolCall, signal: AbortSignal, context?: Context, turnId?: string): Promise<ToolResult> {
    const started = performance.now();
    const result = (content: unknown, outcome: ToolOutcome): ToolResult => ({
      call,
      content: this.#serialize(content),
      outcome,
      durationMs: Math.round((performance.now() - started) * 10) / 10,
    });
    const tool = this.#tools.get(call.name);
    if (!tool) {
      const source = this.#sourceOf(call.name);
      if (source === undefined || source === 'local') {
        return result({ error: `there is no tool named ${call.name}` }, 'unknown-tool');
      }
      const reply = await source.call(call.name, call.arguments, {
        signal,
        timeoutMs: this.timeoutOf(call.name),
        ...(context ? { context } : {}),
      });
      return 'error' in reply ? result(reply, remoteOutcome(reply.error, signal)) : result(reply.result ?? null, 'ok');
    }
    let args: unknown;
    try {
      args = tool.args.parse(call.arguments.trim() === '' ? {} : JSON.parse(call.arguments));
    } catch (err) {
      return result({ error: `bad arguments for ${call.name}: ${message(err)}` }, 'bad-arguments');
    }
    const timeoutMs = this.timeoutOf(call.name);
    const timeout = AbortSignal.timeout(timeoutMs);
    const both = AbortSignal.any([signal, timeout]);
    try {
      // The race makes the timeout hold even for a tool that ignores its signal.
      const info: ToolCallInfo = { ...(context ? { context } : {}), ...(turnId ? { turnId } : {}) };
      const value = await Promise.race([tool.run(args, both, info), aborted(both)]);
      const say = tool.say?.(value);
      return { ...result(value ?? null, 'ok'), ...(say ? { say } : {}) };
    } catch (err) {
      if (signal.aborted) return result({ error: 'cancelled' }, 'cancelled');
      if (timeout.aborted) return result({ error: `${call.name} timed out after ${timeoutMs} ms` }, 'timeout');
      return result({ error: `${call.name} failed: ${message(err)}` }, 'error');
    }
  }

  #serialize(value: unknown): string {
    let text: string;
    try {
      text = JSON.stringify(value) ?? 'null';
    } catch {
      text = JSON.stringify({ error: 'the tool returned something that is not JSON' });
    }
    // Cut, but still JSON: the model is told the result is partial.
    return text.length > this.#opts.maxResultChars
      ? JSON.stringify({ partial: text.slice(0, this.#opts.maxResultChars) })
      : text;
  }
}

/** A tool service's error, as the outcome the metrics count. */
function remoteOutcome(error: string, signal: AbortSignal): ToolOutcome {
  if (signal.aborted) return 'cancelled';
  if (/timed out/.test(error)) return 'timeout';
  if (/^bad arguments/.test(error)) return 'bad-arguments';
  if (/^there is no tool/.test(error)) return 'unknown-tool';
  return 'error';
}

function aborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The demo's tool: the local date and time (what a voice agent is asked all the time and cannot know). */
export const localTimeTool = defineTool({
  name: 'get_local_time',
  description: 'The current local time and date, for questions like "what time is it" or "what day is today".',
  args: z
    .object({
      timeZone: z.string().max(64).optional().describe('IANA time zone, e.g. Europe/Paris; default: the server’s'),
    })
    .strict(),
  timeoutMs: 1_000,
  run: async ({ timeZone }) => {
    const now = new Date();
    const zone = timeZone ?? Intl.DateTimeFormat().resolvedOptions().timeZone;
    const at = (options: Intl.DateTimeFormatOptions) =>
      new Intl.DateTimeFormat('en-US', { ...options, timeZone: zone }).format(now);
    return {
      time: at({ hour: 'numeric', minute: '2-digit' }),
      date: at({ weekday: 'long', month: 'long', day: 'numeric', year: 'numeric' }),
      timeZone: zone,
    };
  },
});

/** Tools by the name used in `TOOLS` (comma-separated) for the deep responder. */
export const BUILTIN_TOOLS: Readonly<Record<string, Tool>> = { local_time: localTimeTool };

/**
 * The deep responder's tools from env: `TOOLS` is a comma-separated list of built-in names (default
 * `local_time`; empty = none), `TOOL_TIMEOUT_MS` the default timeout. Unknown names are an error at start-up.
 */
export function toolsFromEnv(env: NodeJS.ProcessEnv, remote?: RemoteToolSource): ToolRegistry {
  const names = (env.TOOLS ?? 'local_time')
    .split(',')
    .map((n) => n.trim())
    .filter(Boolean);
  const unknown = names.filter((n) => !(n in BUILTIN_TOOLS));
  if (unknown.length > 0) {
    throw new Error(`TOOLS: unknown tool ${unknown.join(', ')} (known: ${Object.keys(BUILTIN_TOOLS).join(', ')})`);
  }
  const timeout = env.TOOL_TIMEOUT_MS ? z.coerce.number().int().positive().parse(env.TOOL_TIMEOUT_MS) : undefined;
  return new ToolRegistry(
    names.map((n) => BUILTIN_TOOLS[n]!),
    timeout === undefined ? {} : { timeoutMs: timeout },
    remote,
  );
}
