import { z } from 'zod';
import { LIMITS } from './limits.js';

/**
 * An agent: who the voice is and what it may do — its instructions, an optional greeting it says first, the
 * tools it may call, the turn-taking it wants. Profiles live in the JetStream KV bucket `va_agents` (key: the
 * name), are managed with `npm run agent`, and are read by the gateway when it opens a session, which carries the
 * chosen profile to every stage in `session.open` (so a changed profile applies to the next session, and a session
 * keeps the version it started with).
 */
export const AGENT_LIMITS = {
  instructionsChars: 8_000,
  greetingChars: 500,
  descriptionChars: 500,
  tools: 32,
} as const;

/** A name usable as a KV key and inside a tool name: lower-case letters, digits, `_`, `-`. */
export const AgentName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'must be 1–63 of a-z 0-9 _ - starting with a letter or digit');
export type AgentName = z.infer<typeof AgentName>;

/** A tool's name as models take it (OpenAI: `^[a-zA-Z0-9_-]{1,64}$`). */
export const ToolName = z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, 'must be 1–64 of a-z A-Z 0-9 _ -');

/** Turn-taking tunables of a session or an agent; unset ones keep the turn detector's defaults. */
export const TurnSettings = z
  .object({
    endpointing: z.enum(['adaptive', 'fixed']),
    minDelayMs: z.number().int().min(0).max(5000),
    maxDelayMs: z.number().int().min(0).max(10_000),
    fixedDelayMs: z.number().int().min(0).max(5000),
    bargeInMinSpeechMs: z.number().int().min(0).max(5000),
    minInterruptionWords: z.number().int().min(0).max(20),
    falseInterruptionMs: z.number().int().min(0).max(10_000),
    resumeFalseInterruption: z.boolean(),
    preemptiveGeneration: z.boolean(),
  })
  .partial()
  .strict();
export type TurnSettings = z.infer<typeof TurnSettings>;

/**
 * An MCP server whose tools the agent may use: a command the deep responder starts (stdio; only commands its
 * `MCP_STDIO_COMMANDS` allows) or a streamable-HTTP URL.
 */
export const McpServerSpec = z.discriminatedUnion('transport', [
  z
    .object({
      name: AgentName,
      transport: z.literal('stdio'),
      command: z.string().min(1).max(200),
      args: z.array(z.string().max(1_000)).max(32).default([]),
      env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), z.string().max(2_000)).optional(),
    })
    .strict(),
  z.object({ name: AgentName, transport: z.literal('http'), url: z.url() }).strict(),
]);
export type McpServerSpec = z.infer<typeof McpServerSpec>;

/** The agent a session runs when none is named and no `default` profile is stored. */
export const DEFAULT_AGENT_NAME = 'default';

export const AgentProfile = z
  .object({
    name: AgentName,
    /** Counts up with every change (`npm run agent -- put` sets it when the file does not). */
    version: z.number().int().positive().default(1),
    description: z.string().max(AGENT_LIMITS.descriptionChars).optional(),
    /** What the agent is for and how it behaves: added to the answer's system prompt. */
    instructions: z.string().min(1, 'may not be empty').max(AGENT_LIMITS.instructionsChars),
    /** Said first when a session opens (stored in the history as heard, interruptible like any reply). */
    greeting: z.string().min(1).max(AGENT_LIMITS.greetingChars).optional(),
    /** Who the voice is (name, manner): added to both prompts. */
    persona: z.string().max(LIMITS.personaChars).optional(),
    /** The tools it may call, by name (tool services on the bus and the deep responder's local tools). */
    tools: z.array(ToolName).max(AGENT_LIMITS.tools).default([]),
    /** Turn-taking for its sessions (unset ones keep the turn detector's defaults). */
    turn: TurnSettings.optional(),
    /** MCP servers whose tools it may use (all of each server's tools). */
    mcpServers: z.array(McpServerSpec).max(8).default([]),
    /**
     * The voice it speaks in (asked of the tts stage's configured provider): a flite voice (`kal`, `awb`, `rms`,
     * `slt`), an OpenAI voice (`alloy`, `nova`…), an ElevenLabs voice id.
     */
    voice: z.string().min(1).max(128).optional(),
    /** The models its responders ask for (sent to each stage's configured provider), e.g. a larger deep model. */
    models: z
      .object({ fast: z.string().min(1).max(128).optional(), deep: z.string().min(1).max(128).optional() })
      .strict()
      .optional(),
    /** Agents it may hand the conversation to: the model sees a `transfer_to_<name>` tool for each. */
    handoffs: z.array(AgentName).max(8).default([]),
  })
  .strict();
export type AgentProfile = z.infer<typeof AgentProfile>;
/** The tool a handoff is offered as (`transfer_to_billing`). */
export const HANDOFF_TOOL_PREFIX = 'transfer_to_';

/**
 * Deep responder → the stages: the conversation is handed to another agent (a `transfer_to_<name>` call in
 * `turnId`). From the next reply on the session runs `agent` (instructions, persona, tools); the history stays.
 */
export const AgentChange = z.object({ turnId: z.string().max(64), from: AgentName, agent: AgentProfile }).strict();
export type AgentChange = z.infer<typeof AgentChange>;

/** A profile as written in a file: what has a default may be left out. */
export type AgentProfileInput = z.input<typeof AgentProfile>;

/**
 * Tools as services: a tool is a NATS micro service (`@nats-io/services`) whose service metadata says it is one
 * (`TOOL_SERVICE_KIND`) and whose endpoint (`subjects.toolService(name)`) carries the tool's description and the JSON
 * Schema of its arguments in its metadata. The deep responder finds them with `$SRV.INFO` and calls them by
 * request (W3C trace context in the headers); the answer is a `ToolReply`.
 */
export const TOOL_SERVICE_KIND = 'va-tool';
export const TOOL_METADATA = { kind: 'va_kind', description: 'description', parameters: 'parameters' } as const;

/** A tool service's answer: its result (any JSON), or why it has none — what the model reads either way. */
export const ToolReply = z.union([
  z.object({ result: z.unknown() }).strict(),
  z.object({ error: z.string().max(LIMITS.errorChars) }).strict(),
]);
export type ToolReply = z.infer<typeof ToolReply>;
