import type { ActorContext, SessionActor } from '@va/actor';
import { BusRequestError } from '@va/bus';
import { CANCEL_REASON, channels, requests, type ChatMessage, type Turn } from '@va/protocol';
import { textOf, type LLM, type LLMOptions } from '@va/providers';
import {
  ATTR,
  counter,
  EVENT,
  histogram,
  METRIC,
  recordError,
  SPAN,
  startStageSpan,
  traceText,
  type Context,
} from '@va/telemetry';
import { withPersona } from './prompts.js';

const round1 = (ms: number) => Math.round(ms * 10) / 10;

/** Rough token count (≈ 4 characters a token, plus per-message overhead) until providers report usage. */
function estimateTokens(messages: readonly ChatMessage[]): number {
  return messages.reduce((n, m) => n + Math.ceil(m.content.length / 4) + 4, 0);
}

const WASTED_REASONS: ReadonlySet<string> = new Set([CANCEL_REASON.preemptMismatch, CANCEL_REASON.preemptAbandoned]);
/** A preview neither committed nor cancelled by then is given up on (the turn detector went away). */
const PREVIEW_VERDICT_TIMEOUT_MS = 10_000;

export interface ResponderOptions {
  stage: string;
  source: 'fast' | 'deep';
  llm: LLM;
  systemPrompt: string;
  /** History budget asked of session-context (the fast opener needs only the last few messages). */
  historyTokens: number;
  /** How long to wait for history before answering without it: latency beats context. */
  historyTimeoutMs: number;
  llmOptions: LLMOptions;
}

/**
 * One session's responder: at every `turn end` it starts generating at once (fast and deep in parallel,
 * neither waits for the other), streams the deltas on its reply channel, and stops when the turn is cancelled.
 */
export function createResponderActor(opts: ResponderOptions): (ctx: ActorContext) => SessionActor {
  const channel = opts.source === 'fast' ? channels.replyFast : channels.replyDeep;
  const spanName = opts.source === 'fast' ? SPAN.fastGenerate : SPAN.deepGenerate;

  return (ctx) => {
    const system = withPersona(opts.systemPrompt, ctx.config.persona);

    async function history(turn: Turn, parent: Context): Promise<ChatMessage[]> {
      try {
        const reply = await ctx.bus.request(
          requests.ctxGet,
          { sessionId: ctx.sessionId, maxTokens: opts.historyTokens, beforeTurnId: turn.turnId },
          { context: parent, timeoutMs: opts.historyTimeoutMs },
        );
        const summary: ChatMessage[] = reply.summary ? [{ role: 'system', content: `Earlier: ${reply.summary}` }] : [];
        return [...summary, ...reply.messages];
      } catch (err) {
        ctx.log.warn(
          { err: err instanceof BusRequestError ? err.message : String(err) },
          'no history, answering without',
        );
        return [];
      }
    }

    async function respond(turn: Turn, parent: Context): Promise<void> {
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
        },
      });
      let seq = 0;
      let text = '';
      let promptTokens = 0;
      let completionDeltas = 0;
      try {
        const fetching = performance.now();
        const messages: ChatMessage[] = [
          { role: 'system', content: system },
          ...(await history(turn, parent)),
          { role: 'user', content: turn.text },
        ];
        // History is our overhead, time to first token is the provider's: benchmarks tell them apart.
        span.setAttribute(ATTR.historyMs, round1(performance.now() - fetching));
        promptTokens = estimateTokens(messages);
        const started = performance.now();
        for await (const delta of textOf(opts.llm.chat(messages, opts.llmOptions, signal))) {
          if (signal.aborted) break;
          if (delta === '') continue;
          if (seq === 0) {
            const ttft = performance.now() - started;
            span.setAttribute(ATTR.ttftMs, round1(ttft));
            histogram(METRIC.ttft).record(ttft, { [ATTR.stage]: opts.stage });
          }
          text += delta;
          completionDeltas++;
          ctx.publish(channel, { turnId: turn.turnId, seq: seq++, delta, done: false }, { context: parent });
        }
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
          // Close the stream so tts is not left waiting for a `done` that never comes.
          ctx.publish(channel, { turnId: turn.turnId, seq, delta: '', done: true }, { context: parent });
        }
      } finally {
        // A preview's cost is known only once the turn detector rules on it: its span stays open until then.
        if (turn.kind === 'preview') await verdict(turn.turnId, signal);
        const reason = ctx.cancelReason(turn.turnId);
        if (reason !== undefined) span.setAttribute(ATTR.cancelReason, reason);
        // Early work the committed turn did not want: what preemptive generation costs, counted once per request.
        if (reason !== undefined && WASTED_REASONS.has(reason) && promptTokens > 0) {
          const wasted = promptTokens + completionDeltas;
          span.setAttribute(ATTR.wastedTokens, wasted);
          span.addEvent(EVENT.preemptiveCancel, { [ATTR.cancelReason]: reason });
          counter(METRIC.preemptiveWasted).add(1, { [ATTR.stage]: opts.stage });
          counter(METRIC.preemptiveWastedTokens).add(wasted, { [ATTR.stage]: opts.stage });
        }
        span.setAttribute(ATTR.interrupted, signal.aborted);
        if (traceText()) span.setAttribute(ATTR.text, text);
        span.end();
        ctx.endTurn(turn.turnId);
      }
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

    /** Turns already being answered: a committed preview goes on, it is not started twice. */
    const started = new Set<string>();
    ctx.subscribe(channels.turn, (turn, meta) => {
      if ((turn.kind !== 'end' && turn.kind !== 'preview') || turn.text.trim() === '') return;
      if (turn.kind === 'end') {
        committed.add(turn.turnId);
        if (committed.size > 64) committed.delete(committed.values().next().value!);
        awaitingVerdict.get(turn.turnId)?.();
      }
      if (started.has(turn.turnId)) return;
      started.add(turn.turnId);
      if (started.size > 64) started.delete(started.values().next().value!);
      // Not awaited: the subscription keeps taking messages (a cancel, the next turn) while this one streams.
      void ctx.track(respond(turn, meta.context));
    });
    return {};
  };
}
