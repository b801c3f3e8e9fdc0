import type { ActorContext, SessionActor } from '@va/actor';
import { buildContext, HistoryReplica } from '@va/context';
import { extractTrace, newHeaders } from '@va/bus';
import { CANCEL_REASON, channels, type ChatMessage, type ToolCall, type Turn } from '@va/protocol';
import type { LLM, LLMOptions, LLMUsage, ServedBy } from '@va/providers';
import {
  ATTR,
  contextOf,
  counter,
  EVENT,
  METRIC,
  recordError,
  recordLatency,
  SPAN,
  startStageSpan,
  traceText,
  type Context,
} from '@va/telemetry';
import { TOOL_APOLOGY, TOOLS_PROMPT, withPersona } from './prompts.js';
import type { ToolRegistry, ToolResult } from './tools.js';

const round1 = (ms: number) => Math.round(ms * 10) / 10;
const round3 = (ms: number) => Math.round(ms * 1000) / 1000;

/**
 * One history replica per bus connection (per process), shared by the responder's session actors: it keeps the
 * sessions this process holds, loaded when the session is claimed and kept current by a KV watch.
 */
class HistoryReplicas {
  private readonly byBus = new WeakMap<ActorContext['bus'], { replica: Promise<HistoryReplica>; held: Set<string> }>();

  /** The process's replica on this connection, opened on first use. */
  open(bus: ActorContext['bus']): { replica: Promise<HistoryReplica>; held: Set<string> } {
    let entry = this.byBus.get(bus);
    if (!entry) {
      const held = new Set<string>();
      const replica = HistoryReplica.open(bus, { log: bus.log, keep: (sid) => held.has(sid) });
      // A failed open is retried by the next session rather than remembered.
      replica.catch(() => this.byBus.delete(bus));
      entry = { replica, held };
      this.byBus.set(bus, entry);
    }
    return entry;
  }

  hold(ctx: ActorContext): Promise<HistoryReplica> {
    const { held, replica } = this.open(ctx.bus);
    held.add(ctx.sessionId);
    // Loaded now, at the claim, not when the first turn ends.
    void replica.then((r) => r.read(ctx.sessionId)).catch(() => undefined);
    ctx.signal.addEventListener(
      'abort',
      () => {
        held.delete(ctx.sessionId);
        void replica.then((r) => r.forget(ctx.sessionId)).catch(() => undefined);
      },
      { once: true },
    );
    return replica;
  }
}
const histories = new HistoryReplicas();

/**
 * Opens the responder's history replica on a service's connection before it claims sessions (runService's
 * `prepare`): its watch is part of the idle process, and the first turn does not wait for it.
 */
export async function prepareResponder(bus: ActorContext['bus']): Promise<void> {
  await histories.open(bus).replica;
}

/** Rough token count (≈ 4 characters a token, plus per-message overhead) until providers report usage. */
function estimateTokens(messages: readonly ChatMessage[]): number {
  return messages.reduce((n, m) => n + Math.ceil(m.content.length / 4) + 4, 0);
}

const WASTED_REASONS: ReadonlySet<string> = new Set([CANCEL_REASON.preemptMismatch, CANCEL_REASON.preemptAbandoned]);
/** A preview neither committed nor cancelled by then is given up on (the turn detector went away). */
const PREVIEW_VERDICT_TIMEOUT_MS = 10_000;

/**
 * The committed turn being answered (va_state): if this instance dies mid-answer, the one that takes the session
 * over answers it again. tts drops the deltas it already has (by seq), so a model that says the same again
 * continues where the first stopped; one that does not has its new text spliced in at that point.
 */
const ANSWERING_STATE = 'answering';
interface AnsweringState {
  turn: Turn;
  /** W3C trace context of the turn, so the retry is a span of the same trace. */
  trace: Record<string, string>;
}

export interface ResponderOptions {
  stage: string;
  source: 'fast' | 'deep';
  llm: LLM;
  systemPrompt: string;
  /** History budget (the fast opener needs only the last few messages). */
  historyTokens: number;
  llmOptions: LLMOptions;
  /** Tools the model may call (deep responder); their results go into the turn's context. */
  tools?: ToolRegistry;
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
 */
export function createResponderActor(opts: ResponderOptions): (ctx: ActorContext) => SessionActor {
  const channel = opts.source === 'fast' ? channels.replyFast : channels.replyDeep;
  const spanName = opts.source === 'fast' ? SPAN.fastGenerate : SPAN.deepGenerate;

  return (ctx) => {
    // Connect now (TLS to the provider), not when the user's first turn ends.
    void opts.llm.prewarm?.();
    const tools = opts.tools && opts.tools.size > 0 ? opts.tools : undefined;
    const maxToolRounds = opts.maxToolRounds ?? 3;
    // Stable across the session's turns (no time, no turn data): the prompt cache reuses it.
    const system = withPersona(tools ? `${opts.systemPrompt} ${TOOLS_PROMPT}` : opts.systemPrompt, ctx.config.persona);

    // This session's history, kept current in memory by the process's replica: nothing to fetch when a turn ends.
    const replica = histories.hold(ctx);

    async function history(turn: Turn): Promise<{ messages: ChatMessage[]; hit: boolean }> {
      try {
        const { doc, hit } = await (await replica).read(ctx.sessionId);
        const reply = buildContext(doc, {
          maxTokens: opts.historyTokens,
          beforeTurnId: turn.turnId,
          ...(tools ? { tools: true } : {}),
        });
        const summary: ChatMessage[] = reply.summary ? [{ role: 'system', content: `Earlier: ${reply.summary}` }] : [];
        return { messages: [...summary, ...reply.messages], hit };
      } catch (err) {
        ctx.log.warn({ err: String(err) }, 'no history, answering without');
        return { messages: [], hit: false };
      }
    }

    async function respond(turn: Turn, parent: Context, retried = false): Promise<void> {
      const signal = ctx.turnSignal(turn.turnId);
      const span = startStageSpan(spanName, {
        parent,
        sessionId: ctx.sessionId,
        turnId: turn.turnId,
        stage: opts.stage,
        attributes: {
          [ATTR.provider]: opts.llm.provider,
          [ATTR.model]: opts.llm.model,
          [ATTR.preemptive]: turn.kind === 'preview',
          ...(retried ? { [ATTR.retried]: true } : {}),
        },
      });
      const spanContext = contextOf(span, parent);
      let seq = 0;
      let text = '';
      let promptTokens = 0;
      let completionTokens = 0;
      const emit = (delta: string) => {
        if (seq === 0) {
          const ttft = performance.now() - started;
          span.setAttribute(ATTR.ttftMs, round1(ttft));
          recordLatency(METRIC.ttft, ttft, { span, attributes: { [ATTR.stage]: opts.stage } });
        }
        text += delta;
        ctx.publish(channel, { turnId: turn.turnId, seq: seq++, delta, done: false }, { context: parent });
      };
      let started = performance.now();
      try {
        const fetching = performance.now();
        const past = await history(turn);
        const messages: ChatMessage[] = [
          { role: 'system', content: system },
          ...past.messages,
          { role: 'user', content: turn.text },
        ];
        // History is our overhead, time to first token is the provider's: benchmarks tell them apart.
        span.setAttributes({
          [ATTR.historyMs]: round3(performance.now() - fetching),
          [ATTR.cacheHit]: past.hit,
        });
        started = performance.now();
        const llmOptions: LLMOptions = {
          ...opts.llmOptions,
          // One key per session: each turn's prompt extends the previous one, which is what a prompt cache reuses.
          promptCacheKey: `${opts.stage}:${ctx.sessionId}`,
        };
        let toolFailed = false;
        let rounds = 0;
        for (;;) {
          // The last round offers no tools, so the model has to answer with what it has.
          const offerTools = tools !== undefined && rounds < maxToolRounds;
          const round = await generate(messages, offerTools ? { ...llmOptions, tools: tools.specs } : llmOptions);
          promptTokens += round.usage?.promptTokens ?? estimateTokens(messages);
          completionTokens += round.usage?.completionTokens ?? round.deltas;
          if (round.usage?.cachedTokens !== undefined) span.setAttribute(ATTR.cachedTokens, round.usage.cachedTokens);
          if (signal.aborted || round.calls.length === 0 || !offerTools) break;
          rounds++;
          // Tools act on the world: a preview's calls wait until the turn is committed (and run only if it is).
          if (turn.kind === 'preview') await verdict(turn.turnId, signal);
          if (signal.aborted) break;
          const results = await Promise.all(round.calls.map((call) => runTool(call, turn, spanContext, signal)));
          if (signal.aborted) break;
          toolFailed ||= results.some((r) => r.outcome !== 'ok');
          ctx.publish(
            channels.tool,
            {
              turnId: turn.turnId,
              calls: results.map((r) => ({
                call: r.call,
                result: r.content,
                ok: r.outcome === 'ok',
                durationMs: r.durationMs,
              })),
            },
            { context: spanContext },
          );
          messages.push(
            { role: 'assistant', content: round.text, toolCalls: round.calls },
            ...results.map((r): ChatMessage => ({ role: 'tool', toolCallId: r.call.id, content: r.content })),
          );
        }
        if (rounds > 0) span.setAttribute(ATTR.toolRounds, rounds);
        // The model was told the tool failed; if it then said nothing, the user still hears why there is no answer.
        if (!signal.aborted && toolFailed && text.trim() === '') emit(TOOL_APOLOGY);
        if (!signal.aborted) {
          ctx.publish(channel, { turnId: turn.turnId, seq, delta: '', done: true }, { context: parent });
        }
      } catch (err) {
        if (!signal.aborted) {
          recordError(span, err);
          ctx.log.error({ err, turnId: turn.turnId }, 'generation failed');
          ctx.bus.publishError(
            channel.subject(ctx.sessionId),
            'provider-failed',
            `${opts.llm.provider}: ${String(err)}`,
          );
          if (opts.apologyOnFailure && text.trim() === '') emit(opts.apologyOnFailure);
          // Close the stream so tts is not left waiting for a `done` that never comes.
          ctx.publish(channel, { turnId: turn.turnId, seq, delta: '', done: true }, { context: parent });
        }
      } finally {
        span.setAttribute(ATTR.promptTokens, promptTokens);
        span.setAttribute(ATTR.completionTokens, completionTokens);
        // A preview's cost is known only once the turn detector rules on it: its span stays open until then.
        if (turn.kind === 'preview') await verdict(turn.turnId, signal);
        const reason = ctx.cancelReason(turn.turnId);
        if (reason !== undefined) span.setAttribute(ATTR.cancelReason, reason);
        // Early work the committed turn did not want: what preemptive generation costs, counted once per request.
        if (reason !== undefined && WASTED_REASONS.has(reason) && promptTokens > 0) {
          const wasted = promptTokens + completionTokens;
          span.setAttribute(ATTR.wastedTokens, wasted);
          span.addEvent(EVENT.preemptiveCancel, { [ATTR.cancelReason]: reason });
          counter(METRIC.preemptiveWasted).add(1, { [ATTR.stage]: opts.stage });
          counter(METRIC.preemptiveWastedTokens).add(wasted, { [ATTR.stage]: opts.stage });
        }
        span.setAttribute(ATTR.interrupted, signal.aborted);
        if (traceText()) span.setAttribute(ATTR.text, text);
        span.end();
        ctx.endTurn(turn.turnId);
        // Answered or cancelled: nothing to retry. (The session going elsewhere is neither: the next owner retries.)
        if (!ctx.signal.aborted) {
          finished.add(turn.turnId);
          if (finished.size > 64) finished.delete(finished.values().next().value!);
          forgetAnswering(turn.turnId);
        }
      }

      /** A fallback chain chose a provider: the span says which, and who was given up on. */
      function servedBy(event: ServedBy): void {
        span.setAttributes({
          [ATTR.provider]: event.provider,
          [ATTR.model]: event.model,
          [ATTR.fallback]: event.fallback,
        });
        for (const f of event.failovers) {
          span.addEvent(EVENT.failover, { [ATTR.provider]: f.provider, [ATTR.failoverReason]: f.reason });
          counter(METRIC.fallbacks).add(1, {
            [ATTR.stage]: opts.stage,
            [ATTR.provider]: f.provider,
            [ATTR.failoverReason]: f.reason,
          });
        }
      }

      /** One LLM request: its text is streamed out as it comes; tool calls and usage are returned. */
      async function generate(messages: readonly ChatMessage[], llmOptions: LLMOptions) {
        const round = { text: '', deltas: 0, calls: [] as ToolCall[], usage: undefined as LLMUsage | undefined };
        for await (const event of opts.llm.chat(messages, llmOptions, signal)) {
          if (signal.aborted) break;
          if (event.type === 'text') {
            if (event.text === '') continue;
            round.text += event.text;
            round.deltas++;
            emit(event.text);
          } else if (event.type === 'tool-calls') {
            round.calls.push(...event.calls);
          } else if (event.type === 'usage') {
            round.usage = event.usage;
          } else {
            servedBy(event);
          }
        }
        return round;
      }
    }

    /** One tool call under its own span (a child of the generation), counted by name and outcome. */
    async function runTool(call: ToolCall, turn: Turn, parent: Context, signal: AbortSignal): Promise<ToolResult> {
      const span = startStageSpan(SPAN.tool, {
        parent,
        sessionId: ctx.sessionId,
        turnId: turn.turnId,
        stage: opts.stage,
        attributes: { [ATTR.toolName]: call.name, [ATTR.toolCallId]: call.id },
      });
      const result = await tools!.call(call, signal);
      span.setAttribute(ATTR.toolOutcome, result.outcome);
      if (result.outcome !== 'ok' && result.outcome !== 'cancelled') {
        // The content can quote the model's arguments (LLM text, often the user's words): only with VA_TRACE_TEXT.
        recordError(span, new Error(traceText() ? result.content : `${call.name}: ${result.outcome}`));
        ctx.log.warn({ turnId: turn.turnId, tool: call.name, outcome: result.outcome }, 'tool call failed');
      }
      const attrs = { [ATTR.stage]: opts.stage, [ATTR.toolName]: call.name, [ATTR.toolOutcome]: result.outcome };
      counter(METRIC.toolCalls).add(1, attrs);
      recordLatency(METRIC.toolDuration, result.durationMs, { span, attributes: attrs });
      span.end();
      return result;
    }

    /** Committed turns, and the previews waiting to hear whether they are. */
    const committed = new Set<string>();
    const awaitingVerdict = new Map<string, () => void>();

    /** Resolves when the preview is committed (`end` with its id) or cancelled, or after a timeout. */
    function verdict(turnId: string, signal: AbortSignal): Promise<void> {
      if (committed.has(turnId) || signal.aborted) return Promise.resolve();
      return new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          signal.removeEventListener('abort', done);
          awaitingVerdict.delete(turnId);
          resolve();
        };
        const timer = setTimeout(done, PREVIEW_VERDICT_TIMEOUT_MS);
        signal.addEventListener('abort', done, { once: true });
        awaitingVerdict.set(turnId, done);
      });
    }

    // Only the answer is worth answering again: an opener that comes late is no opener.
    const retriesOnTakeover = opts.source === 'deep';
    /** The committed turn kept for a retry (the newest). */
    let answering: string | undefined;
    /** Turns whose generation ended here (a preview can finish before its commit arrives: nothing to retry). */
    const finished = new Set<string>();
    function rememberAnswering(turn: Turn, parent: Context): void {
      if (!retriesOnTakeover) return;
      answering = turn.turnId;
      const hdrs = newHeaders({}, parent);
      const trace = Object.fromEntries(hdrs.keys().map((k) => [k, hdrs.get(k)]));
      const state: AnsweringState = { turn: { ...turn, kind: 'end' }, trace };
      ctx.state.keep(ANSWERING_STATE, state);
    }
    function forgetAnswering(turnId: string): void {
      if (answering !== turnId) return;
      answering = undefined;
      ctx.state.drop(ANSWERING_STATE);
    }

    /** Turns already being answered: a committed preview goes on, it is not started twice. */
    const started = new Set<string>();
    function start(turn: Turn, parent: Context, retried = false): void {
      started.add(turn.turnId);
      if (started.size > 64) started.delete(started.values().next().value!);
      // Not awaited: the subscription keeps taking messages (a cancel, the next turn) while this one streams.
      void ctx.track(respond(turn, parent, retried));
    }
    ctx.subscribe(channels.turn, (turn, meta) => {
      if ((turn.kind !== 'end' && turn.kind !== 'preview') || turn.text.trim() === '') return;
      if (!started.has(turn.turnId)) start(turn, meta.context);
      if (turn.kind === 'end') {
        committed.add(turn.turnId);
        if (committed.size > 64) committed.delete(committed.values().next().value!);
        awaitingVerdict.get(turn.turnId)?.();
        // Saved once the answer is under way: the KV write is the retry's safety net, not on the turn's path.
        if (!ctx.isCancelled(turn.turnId) && !finished.has(turn.turnId)) rememberAnswering(turn, meta.context);
      }
    });

    // Taken over from an instance that died answering a committed turn: answer it again.
    if (ctx.reclaimed && retriesOnTakeover) {
      void ctx.track(
        (async () => {
          const saved = await ctx.state.get<AnsweringState>(ANSWERING_STATE).catch(() => undefined);
          if (!saved || started.has(saved.turn.turnId) || ctx.isCancelled(saved.turn.turnId)) return;
          if (ctx.signal.aborted) return;
          committed.add(saved.turn.turnId);
          answering = saved.turn.turnId;
          counter(METRIC.turnsRetried).add(1, { [ATTR.stage]: opts.stage });
          ctx.log.info({ turnId: saved.turn.turnId }, 'answering again a turn the previous owner left unfinished');
          start(saved.turn, extractTrace(newHeaders(saved.trace)), true);
        })(),
      );
    }
    return {};
  };
}
