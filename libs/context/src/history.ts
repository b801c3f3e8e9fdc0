import { LIMITS, ToolCall, type ChatMessage, type CtxGetRequest, type ToolExchange } from '@va/protocol';
import { z } from 'zod';

/** One message of a session's history, tagged with the turn it belongs to. */
export type HistoryEntry =
  | { turnId: string; role: 'user'; content: string }
  | {
      turnId: string;
      role: 'assistant';
      content: string;
      /** The assistant was cut off: `content` is only what the user heard. */
      interrupted?: boolean;
      /** A tool round of the deep responder: the calls it made (their results follow as `tool` entries). */
      toolCalls?: ToolCall[];
    }
  | { turnId: string; role: 'tool'; toolCallId: string; name: string; content: string; ok: boolean };

/**
 * What session-context stores per session: a running summary of the older turns, and the recent messages
 * verbatim. The owner folds old entries into the summary in the background (see actor.ts).
 */
export interface HistoryDoc {
  summary: string | null;
  /** The last turn folded into the summary. */
  summarizedThrough?: string;
  /** Messages folded into the summary so far. */
  summarized: number;
  entries: HistoryEntry[];
}

export const EMPTY_DOC: HistoryDoc = Object.freeze({ summary: null, summarized: 0, entries: [] }) as HistoryDoc;

/** A safety bound on one KV value when summaries keep failing (NATS caps a message at 1 MB). */
export const MAX_ENTRIES = 200;

// ---- stored format --------------------------------------------------------------------------------------

const StoredEntry = z.discriminatedUnion('role', [
  z.object({ turnId: z.string(), role: z.literal('user'), content: z.string() }),
  z.object({
    turnId: z.string(),
    role: z.literal('assistant'),
    content: z.string(),
    interrupted: z.boolean().optional(),
    toolCalls: z.array(ToolCall).min(1).optional(),
  }),
  z.object({
    turnId: z.string(),
    role: z.literal('tool'),
    toolCallId: z.string(),
    name: z.string(),
    content: z.string(),
    ok: z.boolean(),
  }),
]);

const StoredDoc = z.union([
  // Before summaries the value was the bare array of entries: still read, so a rolling upgrade keeps history.
  z.array(StoredEntry).transform((entries) => ({ summary: null, summarized: 0, entries })),
  z.object({
    summary: z.string().nullable(),
    summarizedThrough: z.string().optional(),
    summarized: z.number().int().nonnegative().default(0),
    entries: z.array(StoredEntry),
  }),
]);

/** Reads a stored history value (current or legacy format); undefined when it is not one. */
export function parseDoc(raw: unknown): HistoryDoc | undefined {
  const parsed = StoredDoc.safeParse(raw);
  if (!parsed.success) return undefined;
  const { summarizedThrough, ...rest } = parsed.data as HistoryDoc;
  return summarizedThrough === undefined ? rest : { ...rest, summarizedThrough };
}

// ---- writing --------------------------------------------------------------------------------------------

/** Identity of an entry: storing the same thing twice (re-delivery after a restart) replaces, never duplicates. */
export function entryKey(e: HistoryEntry): string {
  if (e.role === 'tool') return `tool:${e.toolCallId}`;
  if (e.role === 'assistant' && e.toolCalls) return `calls:${e.toolCalls[0]!.id}`;
  return `${e.role}:${e.turnId}`;
}

/** Adds or replaces the entry of (turn, role): a turn re-sent after a restart must not be stored twice. */
export function upsert(history: readonly HistoryEntry[], entry: HistoryEntry): HistoryEntry[] {
  const key = entryKey(entry);
  const at = history.findIndex((e) => entryKey(e) === key);
  if (at >= 0) return history.map((e, i) => (i === at ? entry : e));
  // Channels are consumed independently: a turn's tool round or playout may be stored before its user message,
  // which still goes first in its turn.
  const turnStart = entry.role === 'user' ? history.findIndex((e) => e.turnId === entry.turnId) : -1;
  let next =
    turnStart >= 0 ? [...history.slice(0, turnStart), entry, ...history.slice(turnStart)] : [...history, entry];
  if (entry.role === 'user') next = dropCarriedOver(next, entry);
  return next.slice(-MAX_ENTRIES);
}

/** Lower case, words only: "Book a table," and "book a table for two" compare as prefix. */
function words(text: string): string {
  return text
    .toLowerCase()
    .replace(/[^\p{L}\p{N}'\s]+/gu, ' ')
    .split(/\s+/)
    .filter(Boolean)
    .join(' ');
}

/**
 * An unfinished turn that the turn detector carries over re-arrives joined with the next words under a new
 * turn id. Its first part is then stored twice (alone, and inside the joined message): drop the earlier user
 * message when its turn got nothing played and its words begin the new one.
 */
function dropCarriedOver(history: HistoryEntry[], latest: HistoryEntry): HistoryEntry[] {
  const latestAt = history.indexOf(latest);
  const prevAt = history.slice(0, latestAt).findLastIndex((e) => e.role === 'user' && e.turnId !== latest.turnId);
  if (prevAt < 0) return history;
  const prev = history[prevAt]!;
  const played = history.some(
    (e) => e.turnId === prev.turnId && e.role !== 'user' && (e.content.trim() !== '' || e.role === 'tool'),
  );
  if (played) return history;
  const [before, after] = [words(prev.content), words(latest.content)];
  if (before === '' || !(after === before || after.startsWith(`${before} `))) return history;
  // Its empty playout record (nothing was heard) goes with it.
  return history.filter((e) => e.turnId !== prev.turnId);
}

/**
 * Stores one tool round of a turn: an assistant entry with the calls, then one `tool` entry per result, placed
 * before that turn's spoken answer (the order the model saw them). A round stored again replaces itself.
 */
export function addToolExchange(
  history: readonly HistoryEntry[],
  exchange: ToolExchange,
  maxResultChars: number,
): HistoryEntry[] {
  const group: HistoryEntry[] = [
    { turnId: exchange.turnId, role: 'assistant', content: '', toolCalls: exchange.calls.map((c) => c.call) },
    ...exchange.calls.map((c): HistoryEntry => ({
      turnId: exchange.turnId,
      role: 'tool',
      toolCallId: c.call.id,
      name: c.call.name,
      content: clip(c.result, maxResultChars),
      ok: c.ok,
    })),
  ];
  const keys = new Set(group.map(entryKey));
  const firstOld = history.findIndex((e) => keys.has(entryKey(e)));
  const rest = history.filter((e) => !keys.has(entryKey(e)));
  let at: number;
  if (firstOld >= 0) {
    at = firstOld;
  } else {
    const answer = rest.findIndex((e) => e.turnId === exchange.turnId && e.role === 'assistant' && !e.toolCalls);
    const lastOfTurn = rest.findLastIndex((e) => e.turnId === exchange.turnId);
    at = answer >= 0 ? answer : lastOfTurn >= 0 ? lastOfTurn + 1 : rest.length;
  }
  return [...rest.slice(0, at), ...group, ...rest.slice(at)].slice(-MAX_ENTRIES);
}

// ---- summaries ------------------------------------------------------------------------------------------

export interface WindowOptions {
  /** Messages always kept verbatim. */
  keepRecent: number;
  /** Unsummarized messages above which the older ones are folded into the summary. */
  summarizeAfter: number;
}

/**
 * How many of the oldest entries to fold into the summary now (0: none). Everything but the last `keepRecent`
 * goes, cut back to a turn boundary so a turn (and a tool call with its results) is never split.
 */
export function planFold(entries: readonly HistoryEntry[], opts: WindowOptions): number {
  if (entries.length <= opts.summarizeAfter) return 0;
  let cut = entries.length - opts.keepRecent;
  while (cut > 0 && entries[cut - 1]!.turnId === entries[cut]!.turnId) cut--;
  return Math.max(cut, 0);
}

/** The document after `folded` went into `summary`: those entries leave, the rest stays as it is now. */
export function applyFold(doc: HistoryDoc, folded: readonly HistoryEntry[], summary: string): HistoryDoc {
  const keys = new Set(folded.map(entryKey));
  const last = folded.at(-1);
  return {
    summary,
    ...(last
      ? { summarizedThrough: last.turnId }
      : doc.summarizedThrough
        ? { summarizedThrough: doc.summarizedThrough }
        : {}),
    summarized: doc.summarized + folded.length,
    entries: doc.entries.filter((e) => !keys.has(entryKey(e))),
  };
}

// ---- reading --------------------------------------------------------------------------------------------

/** Rough token count (≈ 4 characters per token, plus per-message overhead), good enough for a budget. */
export function estimateTokens(text: string): number {
  return Math.ceil(text.length / 4) + 4;
}

/** Estimated tokens of one message as a model would receive it (tool calls count their name and arguments). */
export function messageTokens(m: ChatMessage): number {
  const calls = m.role === 'assistant' ? (m.toolCalls ?? []) : [];
  return estimateTokens(m.content) + calls.reduce((n, c) => n + estimateTokens(c.name + c.arguments), 0);
}

/** Estimated tokens of a ctx.get reply: what the budget bounds. */
export function replyTokens(reply: { summary: string | null; messages: readonly ChatMessage[] }): number {
  return (
    (reply.summary === null ? 0 : estimateTokens(reply.summary)) +
    reply.messages.reduce((n, m) => n + messageTokens(m), 0)
  );
}

export interface SelectOptions {
  maxTokens: number;
  /** History as it stood before this turn (the caller adds that turn's own text). */
  beforeTurnId?: string;
  /** Include tool calls and their results. */
  tools?: boolean;
}

/**
 * The messages a model can be given as one unit: a plain message, or an assistant's tool calls together with
 * every result (a `tool` message without its call, or a call without all its results, is refused by APIs).
 */
function units(entries: readonly HistoryEntry[], tools: boolean): ChatMessage[][] {
  const out: ChatMessage[][] = [];
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    if (e.role === 'tool') continue; // orphan result: its call was folded or bounded away
    if (e.role === 'assistant' && e.toolCalls) {
      const results = new Map<string, HistoryEntry>();
      while (entries[i + 1]?.role === 'tool') {
        const r = entries[++i]!;
        if (r.role === 'tool') results.set(r.toolCallId, r);
      }
      const complete = e.toolCalls.every((c) => results.has(c.id));
      if (!tools || !complete) continue;
      out.push([
        { role: 'assistant', content: e.content, toolCalls: e.toolCalls },
        ...e.toolCalls.map((c): ChatMessage => ({
          role: 'tool',
          toolCallId: c.id,
          content: results.get(c.id)!.content,
        })),
      ]);
      continue;
    }
    // An answer interrupted before a word was heard left nothing to remember.
    if (e.content.trim() === '') continue;
    out.push([{ role: e.role, content: e.content }]);
  }
  return out;
}

/** The most recent messages that fit `maxTokens`, oldest first; never a tool result without its call. */
export function selectMessages(history: readonly HistoryEntry[], opts: SelectOptions): ChatMessage[] {
  const cut = opts.beforeTurnId === undefined ? -1 : history.findIndex((e) => e.turnId === opts.beforeTurnId);
  const prior = cut >= 0 ? history.slice(0, cut) : history;
  const all = units(prior, opts.tools === true);
  const picked: ChatMessage[][] = [];
  let budget = opts.maxTokens;
  let count = 0;
  for (let i = all.length - 1; i >= 0; i--) {
    const unit = all[i]!;
    const cost = unit.reduce((n, m) => n + messageTokens(m), 0);
    // Stop at the first that does not fit: the reply is a contiguous recent stretch, never one with holes.
    if (cost > budget || count + unit.length > LIMITS.historyMessages) break;
    budget -= cost;
    count += unit.length;
    picked.push(unit);
  }
  return picked.reverse().flat();
}

/** Longest summary the protocol carries. */
const SUMMARY_LIMIT = LIMITS.textChars * 4;

/** `text` cut to `maxChars` at a word boundary, marked with an ellipsis when cut. */
export function clip(text: string, maxChars: number): string {
  if (text.length <= maxChars) return text;
  if (maxChars <= 1) return '';
  const cut = text.slice(0, maxChars - 1);
  const space = cut.lastIndexOf(' ');
  return `${(space > maxChars / 2 ? cut.slice(0, space) : cut).trimEnd()}…`;
}

/** The summary cut to fit `budget` tokens, or null when not even a few words fit. */
function fitSummary(summary: string, budget: number): string | null {
  if (estimateTokens(summary) <= budget && summary.length <= SUMMARY_LIMIT) return summary;
  const maxChars = Math.min(SUMMARY_LIMIT, (budget - estimateTokens('')) * 4);
  const cut = clip(summary, maxChars);
  return cut.length >= 16 ? cut : null;
}

/**
 * The reply to ctx.get: the summary first, then the most recent messages, together within `maxTokens`
 * (estimated). The latest turns are verbatim and may claim at least half the budget, so a small budget (the
 * fast opener's) still gets them; the summary takes the rest, cut to fit when it is longer.
 */
export function buildContext(
  doc: HistoryDoc,
  req: Pick<CtxGetRequest, 'maxTokens' | 'beforeTurnId' | 'tools'>,
): { summary: string | null; messages: ChatMessage[] } {
  const select = (maxTokens: number) =>
    selectMessages(doc.entries, {
      maxTokens,
      ...(req.beforeTurnId !== undefined ? { beforeTurnId: req.beforeTurnId } : {}),
      ...(req.tools !== undefined ? { tools: req.tools } : {}),
    });
  if (!doc.summary) return { summary: null, messages: select(req.maxTokens) };
  const summaryShare = Math.min(estimateTokens(doc.summary), Math.ceil(req.maxTokens / 2));
  const messages = select(req.maxTokens - summaryShare);
  const used = messages.reduce((n, m) => n + messageTokens(m), 0);
  return { summary: fitSummary(doc.summary, req.maxTokens - used), messages };
}
