import { addToolExchange, applyFold, planFold, upsert, type HistoryDoc, type HistoryEntry } from '@va/context';
import type { Playout, ToolExchange, Turn } from '@va/protocol';
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
import type { ContextOptions } from './options.js';
import type { Summarizer } from './summarizer.js';

type SpanContext = Link['context'];

/** A failed history write is tried again after this, doubling up to the max, until it goes through. */
const WRITE_RETRY_MIN_MS = 100;
const WRITE_RETRY_MAX_MS = 2000;

/** Where the session's history goes and what it runs on: the actor gives KV and the session's lifetime. */
export interface SessionHistoryIo {
  readonly sessionId: string;
  readonly stage: string;
  /** Aborts when the session closes or moves to another instance. */
  readonly signal: AbortSignal;
  /** Writes the whole document (KV); a failure is logged and the next change writes it again. */
  put(doc: HistoryDoc): Promise<void>;
  /** Keeps the session open until the promise settles. */
  track<T>(work: Promise<T>): Promise<T>;
  warn(fields: Record<string, unknown>, msg: string): void;
  error(fields: Record<string, unknown>, msg: string): void;
}

export interface SessionHistoryOptions extends ContextOptions {
  summarizer: Summarizer;
}

/**
 * One session's history, as this stage keeps it: the user's turn as the turn detector closed it, the deep
 * responder's tool rounds, and the assistant's turn as the gateway reports it was really played (opener + answer,
 * cut where the user barged in). Two small state machines: the document's write (`idle → writing`, one write in
 * flight at a time, always of the latest document: changes made meanwhile go out together with the next) and the
 * summary (`idle → summarizing`, in the background, its own trace linked to the turn that triggered it).
 */
export class SessionHistory {
  private writing: Promise<void> | undefined;
  private dirty = false;
  private summarizing: Promise<void> | undefined;
  /** The turn that last asked for a summary: the summarize trace links to it. */
  private trigger: SpanContext | undefined;

  constructor(
    public doc: HistoryDoc,
    private readonly opts: SessionHistoryOptions,
    private readonly io: SessionHistoryIo,
  ) {}

  get state(): { write: 'idle' | 'writing'; summary: 'idle' | 'summarizing' } {
    return { write: this.writing ? 'writing' : 'idle', summary: this.summarizing ? 'summarizing' : 'idle' };
  }

  /** The user's committed turn. */
  userTurn(turn: Turn, parent: Context): void {
    if (turn.kind !== 'end' || turn.text.trim() === '') return;
    this.record(turn.turnId, 'user', parent, () =>
      upsert(this.doc.entries, { turnId: turn.turnId, role: 'user', content: turn.text }),
    );
  }

  /** A round of the deep responder's tool calls. */
  toolExchange(exchange: ToolExchange, parent: Context): void {
    this.record(exchange.turnId, 'tool', parent, () =>
      addToolExchange(this.doc.entries, exchange, this.opts.toolResultChars),
    );
  }

  /** What the user heard of the agent's turn, once it is over. */
  played(p: Playout, parent: Context): void {
    if (!p.done) return;
    const entry: HistoryEntry = {
      turnId: p.turnId,
      role: 'assistant',
      content: p.spokenText,
      ...(p.interrupted ? { interrupted: true } : {}),
    };
    this.record(p.turnId, 'assistant', parent, () => upsert(this.doc.entries, entry));
  }

  /** idle → writing (or a second write queued behind the one in flight). */
  persist(): void {
    this.dirty = true;
    this.writing ??= this.io.track(this.flush());
  }

  /** Starts a summary run when enough has piled up; never awaited by a turn. */
  maybeSummarize(): void {
    if (this.summarizing || this.io.signal.aborted) return;
    const cut = planFold(this.doc.entries, this.opts);
    if (cut === 0) return;
    this.summarizing = this.summarize(this.doc.entries.slice(0, cut), this.trigger).then(
      (ok) => {
        this.summarizing = undefined;
        // More may have piled up meanwhile; after a failure, the next turn retries.
        if (ok) this.maybeSummarize();
      },
      () => (this.summarizing = undefined),
    );
  }

  /** Waits for the summary and the write in flight. */
  async settled(): Promise<void> {
    await this.summarizing;
    await this.writing;
  }

  /** Records one change of the turn `turnId` under a span of that turn's trace (this stage's span in it). */
  private record(turnId: string, role: HistoryEntry['role'], parent: Context, change: () => HistoryEntry[]): void {
    const span = startStageSpan(SPAN.contextUpdate, {
      parent,
      sessionId: this.io.sessionId,
      turnId,
      stage: this.io.stage,
      attributes: { [ATTR.role]: role },
    });
    const entries = change();
    span.setAttribute(ATTR.messages, entries.length);
    this.doc = { ...this.doc, entries };
    this.persist();
    const link = trace.getSpanContext(parent);
    if (link && trace.isSpanContextValid(link)) this.trigger = link;
    this.maybeSummarize();
    span.end();
  }

  private async flush(): Promise<void> {
    let retryMs = WRITE_RETRY_MIN_MS;
    while (this.dirty) {
      this.dirty = false;
      try {
        await this.io.put(this.doc);
        retryMs = WRITE_RETRY_MIN_MS;
      } catch (err) {
        // Written again (the whole document, as it is by then) until it goes through: the bucket may be without
        // a leader for seconds (a NATS node of the cluster lost), and a successor must find every word.
        this.io.error({ err }, 'history write failed: retrying');
        this.dirty = true;
        if (this.io.signal.aborted) break;
        await new Promise((r) => setTimeout(r, retryMs));
        retryMs = Math.min(WRITE_RETRY_MAX_MS, retryMs * 2);
      }
    }
    this.writing = undefined;
  }

  private async summarize(folded: HistoryEntry[], link: SpanContext | undefined): Promise<boolean> {
    const { summarizer } = this.opts;
    const { stage, signal: session } = this.io;
    // Its own trace, linked to the turn that triggered it: a turn's trace never waits on a summary.
    const span = startStageSpan(SPAN.contextSummarize, {
      root: true,
      links: link ? [{ context: link }] : [],
      sessionId: this.io.sessionId,
      stage,
      attributes: {
        [ATTR.provider]: summarizer.provider,
        [ATTR.model]: summarizer.model,
        [ATTR.summarizedMessages]: folded.length,
      },
    });
    const signal = AbortSignal.any([session, AbortSignal.timeout(this.opts.summaryTimeoutMs)]);
    const outcome = (value: string) => {
      span.setAttribute(ATTR.summaryOutcome, value);
      counter(METRIC.contextSummaries).add(1, { [ATTR.stage]: stage, [ATTR.summaryOutcome]: value });
    };
    try {
      const summary = await context.with(trace.setSpan(context.active(), span), () =>
        summarizer.summarize({ previous: this.doc.summary, entries: folded }, signal),
      );
      // The session moved on (closed, handed over): the next owner summarizes from what is in KV.
      if (session.aborted) return false;
      this.doc = applyFold(this.doc, folded, summary);
      this.persist();
      outcome('ok');
      return true;
    } catch (err) {
      if (session.aborted) return false;
      recordError(span, err);
      this.io.warn({ err, messages: folded.length }, 'summary failed: retried at the next turn');
      outcome(signal.aborted ? 'timeout' : 'error');
      return false;
    } finally {
      span.end();
    }
  }
}
