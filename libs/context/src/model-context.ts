/**
 * Reading a history document: what a model is given from it (ctx.get) within a token budget, and the rough
 * token estimates that budget is counted in.
 */
import { LIMITS, type ChatMessage, type CtxGetRequest } from '@va/protocol';
import type { HistoryDoc, HistoryEntry } from './history.js';

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
