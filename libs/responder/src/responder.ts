import type { ActorContext, SessionActor } from '@va/actor';
import { BusRequestError } from '@va/bus';
import { channels, requests, type ChatMessage, type Turn } from '@va/protocol';
import type { LLM, LLMOptions } from '@va/providers';
import { ATTR, histogram, METRIC, recordError, SPAN, startStageSpan, traceText, type Context } from '@va/telemetry';
import { withPersona } from './prompts.js';

const round1 = (ms: number) => Math.round(ms * 10) / 10;

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
        attributes: { [ATTR.provider]: opts.llm.provider, [ATTR.model]: opts.llm.model },
      });
      let seq = 0;
      let text = '';
      try {
        const fetching = performance.now();
        const messages: ChatMessage[] = [
          { role: 'system', content: system },
          ...(await history(turn, parent)),
          { role: 'user', content: turn.text },
        ];
        // History is our overhead, time to first token is the provider's: benchmarks tell them apart.
        span.setAttribute(ATTR.historyMs, round1(performance.now() - fetching));
        const started = performance.now();
        for await (const delta of opts.llm.chat(messages, opts.llmOptions, signal)) {
          if (signal.aborted) break;
          if (delta === '') continue;
          if (seq === 0) {
            const ttft = performance.now() - started;
            span.setAttribute(ATTR.ttftMs, round1(ttft));
            histogram(METRIC.ttft).record(ttft, { [ATTR.stage]: opts.stage });
          }
          text += delta;
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
        span.setAttribute(ATTR.interrupted, signal.aborted);
        if (traceText()) span.setAttribute(ATTR.text, text);
        span.end();
        ctx.endTurn(turn.turnId);
      }
    }

    ctx.subscribe(channels.turn, (turn, meta) => {
      if (turn.kind !== 'end' || turn.text.trim() === '') return;
      // Not awaited: the subscription keeps taking messages (a cancel, the next turn) while this one streams.
      void ctx.track(respond(turn, meta.context));
    });
    return {};
  };
}
