import { z } from 'zod';
import { HANDOFF_TOOL_PREFIX, type AgentProfile, type McpServerSpec } from '@va/protocol';
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
