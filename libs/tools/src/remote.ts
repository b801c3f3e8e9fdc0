import { Svcm, type ServiceInfo } from '@nats-io/services';
import { newHeaders, type Bus } from '@va/bus';
import { TOOL_METADATA, TOOL_SERVICE_KIND, ToolReply } from '@va/protocol';
import type { Context, Logger } from '@va/telemetry';

/** A tool a running service offers: what the model is shown, and where to call it. */
export interface RemoteTool {
  name: string;
  description: string;
  /** JSON Schema of its arguments (the service checks them). */
  parameters: Record<string, unknown>;
  subject: string;
}

export const REMOTE_TOOLS_DEFAULTS = {
  /** How often the running tool services are asked who they are: a tool started or stopped shows within this. */
  discoverEveryMs: 2_000,
  /** How long one discovery waits for answers after the last one came. */
  discoverStallMs: 150,
} as const;

/** The tools of one service's `$SRV.INFO` answer (an endpoint with the tool metadata). */
export function toolsOf(info: ServiceInfo): RemoteTool[] {
  if (info.metadata?.[TOOL_METADATA.kind] !== TOOL_SERVICE_KIND) return [];
  return info.endpoints.flatMap((e) => {
    const description = e.metadata?.[TOOL_METADATA.description];
    const parameters = e.metadata?.[TOOL_METADATA.parameters];
    if (!description || !parameters) return [];
    try {
      const schema = JSON.parse(parameters) as unknown;
      if (typeof schema !== 'object' || schema === null) return [];
      return [{ name: info.name, description, parameters: schema as Record<string, unknown>, subject: e.subject }];
    } catch {
      return [];
    }
  });
}

/**
 * The tool services running on the bus, as the deep responder sees them: asked with `$SRV.INFO` every
 * `discoverEveryMs` (a tool started or stopped changes what the agent can do within that, with no restart), and
 * called by request — trace context in the headers, the turn's signal, a timeout. Never throws: a failure is the
 * `error` the model reads.
 */
export class RemoteTools {
  private tools = new Map<string, RemoteTool>();
  private timer: NodeJS.Timeout | undefined;
  private refreshing: Promise<void> | undefined;

  constructor(
    private readonly bus: Bus,
    private readonly opts: { discoverEveryMs?: number; discoverStallMs?: number; log?: Logger } = {},
  ) {}

  /** Starts discovering (the first round at once); `stop()` ends it. */
  start(): this {
    void this.refresh();
    this.timer = setInterval(
      () => void this.refresh(),
      this.opts.discoverEveryMs ?? REMOTE_TOOLS_DEFAULTS.discoverEveryMs,
    );
    this.timer.unref();
    return this;
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** The tools offered now, by name. */
  list(): RemoteTool[] {
    return [...this.tools.values()];
  }

  get(name: string): RemoteTool | undefined {
    return this.tools.get(name);
  }

  /** Asks every running service who it is; the tools that answered replace the list. */
  refresh(): Promise<void> {
    this.refreshing ??= this.discover().finally(() => (this.refreshing = undefined));
    return this.refreshing;
  }

  private async discover(): Promise<void> {
    if (this.bus.nc.isClosed()) return;
    try {
      const client = new Svcm(this.bus.nc as unknown as ConstructorParameters<typeof Svcm>[0]).client({
        strategy: 'stall',
        maxWait: 1_000,
        stall: this.opts.discoverStallMs ?? REMOTE_TOOLS_DEFAULTS.discoverStallMs,
      } as Parameters<Svcm['client']>[0]);
      const found = new Map<string, RemoteTool>();
      for await (const info of await client.info()) for (const t of toolsOf(info)) found.set(t.name, t);
      this.tools = found;
    } catch (err) {
      // No service answering is no error (no tools); anything else keeps the last list until the next round.
      if (!/no responders|503/i.test(String(err))) this.opts.log?.warn({ err: String(err) }, 'tool discovery failed');
      else this.tools = new Map();
    }
  }

  /** Calls a tool with the model's JSON arguments; the reply, or an error reply (never a throw). */
  async call(
    name: string,
    args: string,
    opts: { signal: AbortSignal; timeoutMs: number; context?: Context },
  ): Promise<ToolReply> {
    const tool = this.tools.get(name);
    if (!tool) return { error: `there is no tool named ${name}` };
    const aborted = new Promise<never>((_, reject) => {
      if (opts.signal.aborted) reject(opts.signal.reason);
      opts.signal.addEventListener('abort', () => reject(opts.signal.reason), { once: true });
    });
    aborted.catch(() => undefined);
    try {
      const msg = await Promise.race([
        this.bus.nc.request(tool.subject, args, { timeout: opts.timeoutMs, headers: newHeaders({}, opts.context) }),
        aborted,
      ]);
      let body: unknown;
      try {
        body = msg.json();
      } catch {
        body = undefined;
      }
      const parsed = ToolReply.safeParse(body);
      return parsed.success ? parsed.data : { error: `${name} answered something that is not a tool reply` };
    } catch (err) {
      if (opts.signal.aborted) return { error: 'cancelled' };
      const text = String(err);
      if (/timeout/i.test(text)) return { error: `${name} timed out after ${opts.timeoutMs} ms` };
      if (/no responders|503/i.test(text)) return { error: `${name} is not running` };
      return { error: `${name} failed: ${text}` };
    }
  }
}
