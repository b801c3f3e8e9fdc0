import { z } from 'zod';
import type { ActorContext } from '@va/actor';
import { channels, DEFAULT_AGENT_NAME, HANDOFF_TOOL_PREFIX, type AgentProfile, type McpServerSpec } from '@va/protocol';
import type { LLMOptions } from '@va/providers';
import { sessionPrompt } from './prompts.js';
import { defineTool, ToolRegistry, type RemoteToolSource, type Tool } from './tools.js';

/** What a responder makes of its session's agent; a handoff makes it again for the new agent. */
export interface AgentSettings {
  system: string;
  tools: ToolRegistry | undefined;
  llmOptions: LLMOptions;
}

export interface AgentSettingsOptions {
  source: 'fast' | 'deep';
  systemPrompt: string;
  llmOptions: LLMOptions;
  tools?: ToolRegistry;
  mcp?: (servers: readonly McpServerSpec[]) => RemoteToolSource;
  /** The deep responder's handoff tools for this agent (`transfer_to_<name>`), if it hands over at all. */
  handoffTools?: (agent: AgentProfile) => Tool[];
}

/**
 * The system prompt and tools for one agent: its instructions (answer only) and persona in the prompt; its tools
 * narrowed to those it names, its MCP servers' tools, and one `transfer_to_<name>` tool per handoff. Without an
 * agent the session gets every tool configured and the stage's prompt with the session's persona.
 */
export function agentSettings(
  opts: AgentSettingsOptions,
  agent: AgentProfile | undefined,
  persona: string | undefined,
): AgentSettings {
  let tools = opts.tools && agent ? opts.tools.only(agent.tools) : opts.tools;
  const handoffs = agent && opts.handoffTools ? opts.handoffTools(agent) : [];
  if (handoffs.length > 0) tools = (tools ?? new ToolRegistry([])).withLocal(handoffs);
  const mcpServers = agent?.mcpServers ?? [];
  if (opts.mcp && mcpServers.length > 0) tools = (tools ?? new ToolRegistry([])).with(opts.mcp(mcpServers));
  const offered = tools && (tools.size > 0 || tools.dynamic) ? tools : undefined;
  return {
    // Stable across the agent's turns (no time, no turn data): the prompt cache reuses it.
    system: sessionPrompt(opts.systemPrompt, {
      // What the agent is for shapes the answer; the opener only acknowledges, in the agent's voice.
      instructions: opts.source === 'deep' ? agent?.instructions : undefined,
      persona,
      tools: offered !== undefined,
    }),
    tools: offered,
    // The agent's own model for this responder, if it names one.
    llmOptions: agent?.models?.[opts.source]
      ? { ...opts.llmOptions, model: agent.models[opts.source] }
      : opts.llmOptions,
  };
}

/** The tool a handoff is offered as; `transfer` hands the session over and returns the new agent. */
export function handoffTool(
  from: AgentProfile,
  to: string,
  transfer: (to: string, turnId: string | undefined) => Promise<AgentProfile>,
): Tool {
  return defineTool({
    name: `${HANDOFF_TOOL_PREFIX}${to}`.slice(0, 64),
    description: `Hand the conversation over to the ${to} agent, when the user needs what it does rather than ${from.name}.`,
    args: z.object({}).strict(),
    timeoutMs: 3_000,
    run: async (_args, _signal, call) => {
      const agent = await transfer(to, call.turnId);
      return { transferred_to: agent.name, greeting: agent.greeting ?? null };
    },
    // The new agent speaks next: its greeting, if it has one, ends this reply.
    say: (result) => (result as { greeting: string | null }).greeting ?? undefined,
  });
}

/** Where the session's agent after a handoff is kept for a successor (va_state). */
const AGENT_STATE = 'agent';

/** What a responder's session needs to know of its agent (a subset of ResponderOptions). */
export interface SessionAgentOptions extends Omit<AgentSettingsOptions, 'handoffTools'> {
  handoff?: { load(ctx: ActorContext, name: string): Promise<AgentProfile | undefined> };
}

/**
 * One session's agent at a responder: what it makes of it (`settings`), the handoff tools that change it, the
 * `agent` messages of other stages' handoffs, and the agent a predecessor left in `va_state`.
 */
export class SessionAgent {
  settings: AgentSettings;
  /** Told the new settings when the agent changes (the turns that start after it use them). */
  onChange: ((settings: AgentSettings) => void) | undefined;
  private agent: AgentProfile | undefined;

  constructor(
    private readonly ctx: ActorContext,
    private readonly opts: SessionAgentOptions,
  ) {
    this.agent = ctx.config.agent;
    this.settings = this.build(this.agent, ctx.config.persona);
    ctx.subscribe(channels.agent, (change) => this.become(change.agent));
    if (ctx.reclaimed) {
      void ctx.track(
        (async () => {
          const saved = await ctx.state.get<AgentProfile>(AGENT_STATE).catch(() => undefined);
          if (saved) this.become(saved);
        })(),
      );
    }
  }

  private build(agent: AgentProfile | undefined, persona: string | undefined): AgentSettings {
    const { handoff, ...rest } = this.opts;
    return agentSettings(
      {
        ...rest,
        ...(handoff
          ? { handoffTools: (from: AgentProfile) => handoffTools(from, (to, turnId) => this.transfer(to, turnId)) }
          : {}),
      },
      agent,
      persona,
    );
  }

  /** From the next reply on, the session runs `next`; kept for an instance that takes over. */
  private become(next: AgentProfile): void {
    if (this.agent?.name === next.name && this.agent.version === next.version) return;
    this.agent = next;
    this.settings = this.build(next, next.persona);
    this.onChange?.(this.settings);
    void this.ctx.state.keep(AGENT_STATE, next);
  }

  /** The model called `transfer_to_<name>`: load that agent, switch to it here at once, tell the other stages. */
  private async transfer(to: string, turnId: string | undefined): Promise<AgentProfile> {
    const next = await this.opts.handoff!.load(this.ctx, to);
    if (!next) throw new Error(`no agent named ${to}`);
    const from = this.agent?.name ?? DEFAULT_AGENT_NAME;
    this.become(next);
    this.ctx.publish(channels.agent, { turnId: turnId ?? '', from, agent: next });
    this.ctx.log.info({ from, to: next.name, version: next.version, turnId }, 'handed over');
    return next;
  }
}

/** One `transfer_to_<name>` tool per agent the session's agent may hand over to. */
function handoffTools(
  from: AgentProfile,
  transfer: (to: string, turnId: string | undefined) => Promise<AgentProfile>,
): Tool[] {
  return [...new Set(from.handoffs)].filter((to) => to !== from.name).map((to) => handoffTool(from, to, transfer));
}
