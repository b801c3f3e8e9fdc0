import type { ChatMessage } from '@va/protocol';

/** One message of a session's history, tagged with the turn it belongs to. */
export interface HistoryEntry {
  turnId: string;
  role: 'user' | 'assistant';
  content: string;
  /** The assistant was cut off: `content` is only what the user heard. */
  interrupted?: boolean;
}

/** Bounded so a long session cannot grow one KV value without limit (summaries come with pruning). */
export const MAX_ENTRIES = 200;

/** Rough token count (≈ 4 characters per token, plus per-message overhead), good enough for a budget. */
export function estimateTokens(text: string): number {
  return Math.ceil(text.length / 4) + 4;
}

/** Adds or replaces the entry of (turn, role): a turn re-sent after a restart must not be stored twice. */
export function upsert(history: HistoryEntry[], entry: HistoryEntry): HistoryEntry[] {
  const at = history.findIndex((e) => e.turnId === entry.turnId && e.role === entry.role);
  const next = at >= 0 ? history.map((e, i) => (i === at ? entry : e)) : [...history, entry];
  return next.slice(-MAX_ENTRIES);
}

/**
 * The most recent messages that fit `maxTokens`, oldest first, as they stood before `beforeTurnId`
 * (the caller adds that turn's own text).
 */
export function selectMessages(
  history: readonly HistoryEntry[],
  maxTokens: number,
  beforeTurnId?: string,
): ChatMessage[] {
  const cut = beforeTurnId === undefined ? -1 : history.findIndex((e) => e.turnId === beforeTurnId);
  const prior = cut >= 0 ? history.slice(0, cut) : history;
  const picked: ChatMessage[] = [];
  let budget = maxTokens;
  for (let i = prior.length - 1; i >= 0; i--) {
    const e = prior[i]!;
    if (e.content.trim() === '') continue;
    const cost = estimateTokens(e.content);
    if (cost > budget) break;
    budget -= cost;
    picked.push({ role: e.role, content: e.content });
  }
  return picked.reverse();
}
