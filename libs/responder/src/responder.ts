import type { ActorContext, SessionActor } from '@va/actor';
import { extractTrace, newHeaders } from '@va/bus';
import { channels, type McpServerSpec, type ResponderSource } from '@va/protocol';
import type { LLM, LLMOptions } from '@va/providers';
import { ATTR, counter, METRIC, SPAN } from '@va/telemetry';
import { TurnAnswer, type AnswerOutput, type AnswerSettings } from './answer.js';
import { sessionHistory } from './history.js';
import { sessionPrompt } from './prompts.js';
import { SessionResponder, type AnsweringState } from './session-responder.js';
import { ToolRegistry, type RemoteToolSource } from './tools.js';

export { prepareResponder } from './history.js';

/** Where the turn being answered is kept for a successor (va_state). */
const ANSWERING_STATE = 'answering';

export interface ResponderOptions {
  stage: string;
  source: ResponderSource;
  llm: LLM;
  systemPrompt: string;
  /** History budget (the fast opener needs only the last few messages). */
  historyTokens: number;
  llmOptions: LLMOptions;
  /** Tools the model may call (deep responder); their results go into the turn's context. */
  tools?: ToolRegistry;
  /** A session's agent's MCP servers as a tool source (deep responder); their tools are offered whole. */
  mcp?: (servers: readonly McpServerSpec[]) => RemoteToolSource;
  /** Tool rounds per turn before the model must answer. Default 3. */
  maxToolRounds?: number;
  /**
   * Said when generation fails before any text (every provider down): the user hears why there is no answer.
   * Unset for the opener: a missing acknowledgement needs no apology.
   */
  apologyOnFailure?: string;
}

/**
 * One session's responder: at every `turn end` it starts generating at once (fast and deep in parallel,
 * neither waits for the other), streams the deltas on its reply channel, and stops when the turn is cancelled.
 * Which turns to answer and when is session-responder.ts; answering one is answer.ts; this wires them to the bus.
 */
export function createResponderActor(opts: ResponderOptions): (ctx: ActorContext) => SessionActor {
  const channel = opts.source === 'fast' ? channels.replyFast : channels.replyDeep;

  return (ctx) => {
    // Connect now (TLS to the provider), not when the user's first turn ends.
    void opts.llm.prewarm?.();
    // An agent profile names the tools it may use; without one the session gets every tool configured.
    const agent = ctx.config.agent;
    const narrowed = opts.tools && agent ? opts.tools.only(agent.tools) : opts.tools;
    const mcpServers = agent?.mcpServers ?? [];
    const offered =
      opts.mcp && mcpServers.length > 0 ? (narrowed ?? new ToolRegistry([])).with(opts.mcp(mcpServers)) : narrowed;
    const tools = offered && (offered.size > 0 || offered.dynamic) ? offered : undefined;
    const settings: AnswerSettings = {
      stage: opts.stage,
      spanName: opts.source === 'fast' ? SPAN.fastGenerate : SPAN.deepGenerate,
      llm: opts.llm,
      // Stable across the session's turns (no time, no turn data): the prompt cache reuses it.
      system: sessionPrompt(opts.systemPrompt, {
        // What the agent is for shapes the answer; the opener only acknowledges, in the agent's voice.
        instructions: opts.source === 'deep' ? agent?.instructions : undefined,
        persona: ctx.config.persona,
        tools: tools !== undefined,
      }),
      llmOptions: opts.llmOptions,
      tools,
      maxToolRounds: opts.maxToolRounds ?? 3,
      apologyOnFailure: opts.apologyOnFailure,
    };
    const history = sessionHistory(ctx, { maxTokens: opts.historyTokens, tools: tools !== undefined });
    const out: AnswerOutput = {
      sessionId: ctx.sessionId,
      reply: (msg, context) => ctx.publish(channel, msg, { context }),
      tool: (msg, context) => ctx.publish(channels.tool, msg, { context }),
      failed: (turnId, err) => {
        ctx.log.error({ err, turnId }, 'generation failed');
        ctx.bus.publishError(channel.subject(ctx.sessionId), 'provider-failed', `${opts.llm.provider}: ${String(err)}`);
      },
      toolFailed: (turnId, tool, outcome) => ctx.log.warn({ turnId, tool, outcome }, 'tool call failed'),
    };
    // Only the answer is worth answering again: an opener that comes late is no opener.
    const retriesOnTakeover = opts.source === 'deep';
    const turns: SessionResponder = new SessionResponder({
      answer: async (turn, parent, retried) => {
        const signal = ctx.turnSignal(turn.turnId);
        try {
          await ctx.track(new TurnAnswer(turn, parent, signal, settings, history, turns, out, retried).run());
        } finally {
          ctx.endTurn(turn.turnId);
        }
      },
      isCancelled: (turnId) => ctx.isCancelled(turnId),
      cancelReason: (turnId) => ctx.cancelReason(turnId),
      get closing() {
        return ctx.signal.aborted;
      },
      ...(retriesOnTakeover
        ? {
            keepAnswering: {
              keep: (state: AnsweringState) => ctx.state.keep(ANSWERING_STATE, state),
              drop: () => ctx.state.drop(ANSWERING_STATE),
              trace: (parent) => {
                const hdrs = newHeaders({}, parent);
                return Object.fromEntries(hdrs.keys().map((k) => [k, hdrs.get(k)]));
              },
            },
          }
        : {}),
    });
    ctx.subscribe(channels.turn, (turn, meta) => {
      // The agent speaks first: its greeting is the answer, said as written (no model; no opener before it).
      if (turn.kind === 'agent') {
        if (opts.source === 'deep' && turn.text !== '') {
          ctx.publish(
            channel,
            { turnId: turn.turnId, seq: 0, delta: turn.text, done: true },
            { context: meta.context },
          );
        }
        return;
      }
      turns.turn(turn, meta.context);
    });

    // Taken over from an instance that died answering a committed turn: answer it again.
    if (ctx.reclaimed && retriesOnTakeover) {
      void ctx.track(
        (async () => {
          const saved = await ctx.state.get<AnsweringState>(ANSWERING_STATE).catch(() => undefined);
          if (!saved || ctx.signal.aborted) return;
          if (!turns.retry(saved, extractTrace(newHeaders(saved.trace)))) return;
          counter(METRIC.turnsRetried).add(1, { [ATTR.stage]: opts.stage });
          ctx.log.info({ turnId: saved.turn.turnId }, 'answering again a turn the previous owner left unfinished');
        })(),
      );
    }
    return {};
  };
}
