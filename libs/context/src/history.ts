import { ToolCall, type ToolExchange } from '@va/protocol';
import { z } from 'zod';
import { clip } from './model-context.js';

// What a model is given from the document lives next door; re-exported so this module keeps its whole API.
export * from './model-context.js';

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
