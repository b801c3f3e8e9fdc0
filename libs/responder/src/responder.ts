import type { ActorContext, SessionActor } from '@va/actor';
import { traceFields, traceFromFields } from '@va/bus';
import { channels, sessionRequests, type AgentProfile, type McpServerSpec, type ResponderSource } from '@va/protocol';
import type { LLM, LLMOptions } from '@va/providers';
import pRetry from 'p-retry';
import { ATTR, counter, METRIC, SPAN } from '@va/telemetry';
import { TurnAnswer, type AnswerOutput, type AnswerSettings } from './answer.js';
import { sessionHistory } from './history.js';
import { ReplyLog } from './reply-log.js';
import { SessionAgent } from './session-agent.js';
import { SessionResponder, type AnsweringState } from './session-responder.js';
import type { RemoteToolSource, ToolRegistry } from './tools.js';

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
  /** Handoffs (deep responder): where another agent's profile is read when the model transfers to it. */
  handoff?: { load(ctx: ActorContext, name: string): Promise<AgentProfile | undefined> };
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
    // The session's agent (from session.open, a handoff, or the last one a predecessor saw): its prompt and tools.
    const agent = new SessionAgent(ctx, opts);
    const { tools } = agent.settings;
    const settings: AnswerSettings = {
      stage: opts.stage,
      spanName: opts.source === 'fast' ? SPAN.fastGenerate : SPAN.deepGenerate,
      llm: opts.llm,
      ...agent.settings,
      maxToolRounds: opts.maxToolRounds ?? 3,
      apologyOnFailure: opts.apologyOnFailure,
    };
    // A handoff changes the prompt and tools of the turns that start after it.
    agent.onChange = (next) => Object.assign(settings, next);
    const history = sessionHistory(ctx, { maxTokens: opts.historyTokens, tools: tools !== undefined });
    // What was streamed, for a tts instance that takes the session over mid-turn.
    const replies = new ReplyLog();
    const out = busOutput(ctx, channel, opts.llm.provider, replies);
    ctx.serve(
      opts.source === 'fast' ? sessionRequests.replyFastReplay : sessionRequests.replyDeepReplay,
      ({ turnId }) => replies.replay(turnId),
    );
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
              trace: traceFields,
            },
          }
        : {}),
    });
    ctx.subscribe(channels.turn, (turn, meta) => {
      // The agent speaks first: its greeting is the answer, said as written (no model; no opener before it).
      if (turn.kind === 'agent') {
        if (opts.source === 'deep' && turn.text !== '') {
          out.reply({ turnId: turn.turnId, seq: 0, delta: turn.text, done: true }, meta.context);
        }
        return;
      }
      turns.turn(turn, meta.context);
    });

    // Taken over from an instance that died answering a committed turn: answer it again.
    if (ctx.reclaimed && retriesOnTakeover) void ctx.track(answerAgain(ctx, turns, opts.stage));
    // Back from a lost connection (its NATS server died): a turn end sent meanwhile never came — ask for it.
    if (retriesOnTakeover) ctx.onReconnect = () => void ctx.track(answerMissed(ctx, turns));
    return {};
  };
}

/** Where an answer's output goes: the reply channel, the tool channel, error events and logs. */
function busOutput(
  ctx: ActorContext,
  channel: typeof channels.replyFast,
  provider: string,
  replies: ReplyLog,
): AnswerOutput {
  return {
    sessionId: ctx.sessionId,
    reply: (msg, context) => {
      ctx.publish(channel, msg, { context });
      replies.sent(msg);
    },
    tool: (msg, context) => ctx.publish(channels.tool, msg, { context }),
    failed: (turnId, err) => {
      ctx.log.error({ err, turnId }, 'generation failed');
      ctx.bus.publishError(channel.subject(ctx.sessionId), 'provider-failed', `${provider}: ${String(err)}`);
    },
    toolFailed: (turnId, tool, outcome) => ctx.log.warn({ turnId, tool, outcome }, 'tool call failed'),
  };
}

/** How long a responder back from a lost connection waits for the turn detector's newest turns. */
const TURN_REPLAY_TIMEOUT_MS = 1000;

/**
 * The newest turn end the turn detector sent, if this responder never had it (it went out while the connection
 * was down): answered now, in its trace. Older turns are left: the newest is the one the user waits on.
 */
async function answerMissed(ctx: ActorContext, turns: SessionResponder): Promise<void> {
  // The turn detector may be reconnecting too (the same server lost): asked a few times.
  const sent = await pRetry(() => ctx.request(sessionRequests.turnReplay, {}, { timeoutMs: TURN_REPLAY_TIMEOUT_MS }), {
    retries: 3,
    minTimeout: 200,
    signal: ctx.signal,
  }).then(
    (r) => r.turns,
    (err: unknown) => void ctx.log.warn({ err: String(err) }, 'no turns from the turn detector after a reconnect'),
  );
  if (!sent) return;
  const newest = sent.filter((t) => t.turn.kind === 'end').at(-1);
  if (!newest || ctx.signal.aborted || ctx.isCancelled(newest.turn.turnId)) return;
  const state = turns.stateOf(newest.turn.turnId);
  if (state === 'committed' || state === 'finished') return;
  ctx.log.info({ turnId: newest.turn.turnId, state }, 'a turn end missed while disconnected: answering it');
  turns.turn(newest.turn, traceFromFields(newest.trace));
}

/** The committed turn a predecessor was answering when it died, answered again (counted, logged). */
async function answerAgain(ctx: ActorContext, turns: SessionResponder, stage: string): Promise<void> {
  const saved = await ctx.state.get<AnsweringState>(ANSWERING_STATE).catch(() => undefined);
  if (!saved || ctx.signal.aborted) return;
  if (!turns.retry(saved, traceFromFields(saved.trace))) return;
  counter(METRIC.turnsRetried).add(1, { [ATTR.stage]: stage });
  ctx.log.info({ turnId: saved.turn.turnId }, 'answering again a turn the previous owner left unfinished');
}
