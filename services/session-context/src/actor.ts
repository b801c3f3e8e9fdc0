import type { ActorContext, ActorFactory, SessionActor } from '@va/actor';
import { channels } from '@va/protocol';
import {
  ATTR,
  context,
  counter,
  METRIC,
  recordError,
  SPAN,
  startStageSpan,
  trace,
  type Context,
  type Link,
} from '@va/telemetry';
import {
  addToolExchange,
  applyFold,
  EMPTY_DOC,
  HISTORY_STATE,
  parseDoc,
  planFold,
  upsert,
  type HistoryDoc,
  type HistoryEntry,
} from '@va/context';
import { STAGE, type ContextOptions } from './options.js';
import type { Summarizer } from './summarizer.js';

export { HISTORY_STATE };

export interface ContextActorOptions extends ContextOptions {
  summarizer: Summarizer;
  stage?: string;
}

type SpanContext = Link['context'];

/**
 * Keeps one session's history in KV: the user's turn as the turn detector closed it, the deep responder's tool
 * rounds, and the assistant's turn as the gateway reports it was really played (opener + answer, cut where the
 * user barged in). Older messages are folded into a summary in the background. This actor is the only writer;
 * every instance serves ctx.get from its cache of what was written (cache.ts). The state bucket is file-backed
 * JetStream (nats.js KV's default storage, which bus.kv() keeps), so the history outlives restarts of this
 * service and of nats-server; the instance that re-claims the session reads it back.
 */
export function contextActor(opts: ContextActorOptions): ActorFactory {
  const stage = opts.stage ?? STAGE;
  return async (ctx: ActorContext): Promise<SessionActor> => {
    // A re-claimed session continues from what the previous owner stored (either stored format).
    const stored = await ctx.state.get<unknown>(HISTORY_STATE);
    let doc: HistoryDoc = (stored === undefined ? undefined : parseDoc(stored)) ?? EMPTY_DOC;
    if (stored !== undefined && doc === EMPTY_DOC) ctx.log.warn('unreadable history in KV: starting afresh');
    let writing: Promise<void> | undefined;
    let dirty = false;
    let summarizing: Promise<void> | undefined;
    /** The turn that last asked for a summary: the summarize trace links to it. */
    let trigger: SpanContext | undefined;

    /**
     * One write in flight at a time, always of the latest document: changes made while a write is in flight are
     * written together by the next one (KV and every instance's cache see fewer, never older, versions).
     */
    const persist = () => {
      dirty = true;
      writing ??= ctx.track(flush());
    };
    async function flush(): Promise<void> {
      while (dirty) {
        dirty = false;
        try {
          await ctx.state.put(HISTORY_STATE, doc);
        } catch (err) {
          // The next change writes the whole document again.
          ctx.log.error({ err }, 'history write failed');
        }
      }
      writing = undefined;
    }

    const save = (entries: HistoryEntry[], parent: Context) => {
      doc = { ...doc, entries };
      persist();
      const link = trace.getSpanContext(parent);
      if (link && trace.isSpanContextValid(link)) trigger = link;
      maybeSummarize();
    };

    /** Starts a summary run when enough has piled up; never awaited by a turn (its own trace, in the background). */
    function maybeSummarize(): void {
      if (summarizing || ctx.signal.aborted) return;
      const cut = planFold(doc.entries, opts);
      if (cut === 0) return;
      summarizing = summarize(doc.entries.slice(0, cut), trigger).then(
        (ok) => {
          summarizing = undefined;
          // More may have piled up meanwhile; after a failure, the next turn retries.
          if (ok) maybeSummarize();
        },
        () => (summarizing = undefined),
      );
    }

    async function summarize(folded: HistoryEntry[], link: SpanContext | undefined): Promise<boolean> {
      // Its own trace, linked to the turn that triggered it: a turn's trace never waits on a summary.
      const span = startStageSpan(SPAN.contextSummarize, {
        root: true,
        links: link ? [{ context: link }] : [],
        sessionId: ctx.sessionId,
        stage,
        attributes: {
          [ATTR.provider]: opts.summarizer.provider,
          [ATTR.model]: opts.summarizer.model,
          [ATTR.summarizedMessages]: folded.length,
        },
      });
      const signal = AbortSignal.any([ctx.signal, AbortSignal.timeout(opts.summaryTimeoutMs)]);
      try {
        const summary = await context.with(trace.setSpan(context.active(), span), () =>
          opts.summarizer.summarize({ previous: doc.summary, entries: folded }, signal),
        );
        // The session moved on (closed, handed over): the next owner summarizes from what is in KV.
        if (ctx.signal.aborted) return false;
        doc = applyFold(doc, folded, summary);
        persist();
        span.setAttribute(ATTR.summaryOutcome, 'ok');
        counter(METRIC.contextSummaries).add(1, { [ATTR.stage]: stage, [ATTR.summaryOutcome]: 'ok' });
        return true;
      } catch (err) {
        if (ctx.signal.aborted) return false;
        recordError(span, err);
        ctx.log.warn({ err, messages: folded.length }, 'summary failed: retried at the next turn');
        const outcome = signal.aborted ? 'timeout' : 'error';
        span.setAttribute(ATTR.summaryOutcome, outcome);
        counter(METRIC.contextSummaries).add(1, { [ATTR.stage]: stage, [ATTR.summaryOutcome]: outcome });
        return false;
      } finally {
        span.end();
      }
    }

    /** Records one change of the turn `turnId` under a span of that turn's trace (this stage's span in it). */
    const record = (turnId: string, role: HistoryEntry['role'], parent: Context, change: () => HistoryEntry[]) => {
      const span = startStageSpan(SPAN.contextUpdate, {
        parent,
        sessionId: ctx.sessionId,
        turnId,
        stage,
        attributes: { [ATTR.role]: role },
      });
      const entries = change();
      span.setAttribute(ATTR.messages, entries.length);
      save(entries, parent);
      span.end();
    };

    ctx.subscribe(channels.turn, (turn, meta) => {
      if (turn.kind !== 'end' || turn.text.trim() === '') return;
      record(turn.turnId, 'user', meta.context, () =>
        upsert(doc.entries, { turnId: turn.turnId, role: 'user', content: turn.text }),
      );
    });

    ctx.subscribe(channels.tool, (exchange, meta) => {
      record(exchange.turnId, 'tool', meta.context, () => addToolExchange(doc.entries, exchange, opts.toolResultChars));
    });

    ctx.subscribe(channels.playout, (p, meta) => {
      if (!p.done) return;
      const entry: HistoryEntry = {
        turnId: p.turnId,
        role: 'assistant',
        content: p.spokenText,
        ...(p.interrupted ? { interrupted: true } : {}),
      };
      record(p.turnId, 'assistant', meta.context, () => upsert(doc.entries, entry));
    });

    // A reclaimed session may have been left over the threshold by an owner that died mid-summary.
    maybeSummarize();

    // A new session's (empty) document is written at once, so every instance's cache has it before the first
    // turn asks: the first ctx.get is a cache hit, not a KV read.
    if (stored === undefined) persist();

    return {
      stop: async () => {
        await summarizing;
        await writing;
      },
    };
  };
}
