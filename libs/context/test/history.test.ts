import { describe, expect, it } from 'vitest';
import type { ChatMessage, ToolExchange } from '@va/protocol';
import {
  addToolExchange,
  applyFold,
  buildContext,
  estimateTokens,
  MAX_ENTRIES,
  parseDoc,
  planFold,
  replyTokens,
  selectMessages,
  upsert,
  type HistoryDoc,
  type HistoryEntry,
} from '../src/history.js';

const h = (turnId: string, role: 'user' | 'assistant', content: string): HistoryEntry => ({ turnId, role, content });
const contents = (messages: ChatMessage[]) => messages.map((m) => m.content);
const all = { maxTokens: 10_000 };

describe('session history', () => {
  const history = [
    h('t1', 'user', 'what is the weather'),
    h('t1', 'assistant', 'Let me check. It is sunny.'),
    h('t2', 'user', 'and tomorrow'),
    h('t2', 'assistant', 'Rain is expected.'),
    h('t3', 'user', 'should I take an umbrella'),
  ];

  it('keeps the newest messages that fit the budget, oldest first', () => {
    expect(contents(selectMessages(history, all))).toEqual(history.map((e) => e.content));
    const budget = estimateTokens('Rain is expected.') + estimateTokens('should I take an umbrella');
    expect(contents(selectMessages(history, { maxTokens: budget }))).toEqual([
      'Rain is expected.',
      'should I take an umbrella',
    ]);
    expect(selectMessages(history, { maxTokens: 1 })).toEqual([]);
  });

  it('gives the history as it stood before a turn', () => {
    expect(contents(selectMessages(history, { ...all, beforeTurnId: 't3' }))).toEqual(
      history.slice(0, 4).map((e) => e.content),
    );
    expect(selectMessages(history, { ...all, beforeTurnId: 'unknown' })).toHaveLength(5);
  });

  it('stores a turn once even when it is reported twice, and stays bounded', () => {
    const once = upsert(upsert(history, h('t3', 'assistant', 'Yes.')), h('t3', 'assistant', 'Yes, take one.'));
    expect(once.filter((e) => e.turnId === 't3' && e.role === 'assistant')).toEqual([
      h('t3', 'assistant', 'Yes, take one.'),
    ]);
    expect(upsert(once, h('t3', 'user', 'should I take an umbrella'))).toEqual(once);
    let long: HistoryEntry[] = [];
    for (let i = 0; i < MAX_ENTRIES + 20; i++) long = upsert(long, h(`t${i}`, 'user', `message ${i}`));
    expect(long).toHaveLength(MAX_ENTRIES);
    expect(long[long.length - 1]!.content).toBe(`message ${MAX_ENTRIES + 19}`);
  });

  it('drops empty messages (an answer interrupted before a word was heard)', () => {
    expect(selectMessages([h('t1', 'user', 'hi'), h('t1', 'assistant', '')], { maxTokens: 100 })).toEqual([
      { role: 'user', content: 'hi' },
    ]);
  });

  it('drops the first part of a turn carried over into the next (nothing played, words repeated)', () => {
    const carried = upsert([h('t1', 'user', 'Book a table,')], h('t2', 'user', 'book a table for two at eight'));
    expect(carried).toEqual([h('t2', 'user', 'book a table for two at eight')]);
    // An empty playout record of the abandoned turn goes too.
    const withEmpty = upsert(
      [h('t1', 'user', 'Book a table'), h('t1', 'assistant', '')],
      h('t2', 'user', 'book a table for two'),
    );
    expect(withEmpty).toEqual([h('t2', 'user', 'book a table for two')]);
    // Kept: the agent answered it, or the new words do not continue it (a word prefix, not a character one).
    const answered = [h('t1', 'user', 'book a table'), h('t1', 'assistant', 'For how many?')];
    expect(upsert(answered, h('t2', 'user', 'book a table for two'))).toHaveLength(3);
    expect(upsert([h('t1', 'user', 'book')], h('t2', 'user', 'bookshop hours'))).toHaveLength(2);
  });

  it('reads the legacy bare-array format and the current document; refuses anything else', () => {
    expect(parseDoc(history)).toEqual({ summary: null, summarized: 0, entries: history });
    const doc: HistoryDoc = { summary: 'Earlier talk.', summarizedThrough: 't0', summarized: 4, entries: history };
    expect(parseDoc(JSON.parse(JSON.stringify(doc)))).toEqual(doc);
    expect(parseDoc({ entries: 'nope' })).toBeUndefined();
    expect(parseDoc([{ role: 'robot', content: 'x', turnId: 't' }])).toBeUndefined();
  });
});

describe('tool exchanges', () => {
  const exchange = (turnId: string, ...ids: string[]): ToolExchange => ({
    turnId,
    calls: ids.map((id) => ({
      call: { id, name: 'get_weather', arguments: '{"city":"Paris"}' },
      result: `{"forecast":"sunny ${id}"}`,
      ok: true,
      durationMs: 12,
    })),
  });
  const base = [h('t1', 'user', 'hello'), h('t1', 'assistant', 'Hi.'), h('t2', 'user', 'weather in Paris?')];

  it('stores a round before the turn’s answer, once even when re-delivered', () => {
    // Before the answer is played, and when the exchange comes late, after it.
    const early = upsert(addToolExchange(base, exchange('t2', 'c1', 'c2'), 1000), h('t2', 'assistant', 'Sunny.'));
    const late = addToolExchange(upsert(base, h('t2', 'assistant', 'Sunny.')), exchange('t2', 'c1', 'c2'), 1000);
    for (const entries of [early, late]) {
      expect(entries.map((e) => e.role)).toEqual([
        'user',
        'assistant',
        'user',
        'assistant',
        'tool',
        'tool',
        'assistant',
      ]);
      expect(entries.at(-1)!.content).toBe('Sunny.');
    }
    expect(addToolExchange(early, exchange('t2', 'c1', 'c2'), 1000)).toEqual(early);
    // A second round of the same turn follows the first.
    const two = addToolExchange(early, exchange('t2', 'c3'), 1000);
    expect(two.filter((e) => e.role === 'tool').map((e) => (e.role === 'tool' ? e.toolCallId : ''))).toEqual([
      'c1',
      'c2',
      'c3',
    ]);
    expect(two.at(-1)!.content).toBe('Sunny.');
    // Results are stored cut: one KV value holds the whole history.
    const long = addToolExchange(
      base,
      { ...exchange('t2', 'c9'), calls: [{ ...exchange('t2', 'c9').calls[0]!, result: 'x '.repeat(500) }] },
      100,
    );
    expect(long.find((e) => e.role === 'tool')!.content.length).toBeLessThanOrEqual(100);
  });

  it('returns tool messages only when asked, always right after their call', () => {
    const entries = upsert(addToolExchange(base, exchange('t2', 'c1', 'c2'), 1000), h('t2', 'assistant', 'Sunny.'));
    expect(selectMessages(entries, all).map((m) => m.role)).toEqual(['user', 'assistant', 'user', 'assistant']);
    const withTools = selectMessages(entries, { ...all, tools: true });
    expect(withTools.map((m) => m.role)).toEqual([
      'user',
      'assistant',
      'user',
      'assistant',
      'tool',
      'tool',
      'assistant',
    ]);
    expect(withTools[3]).toMatchObject({ role: 'assistant', toolCalls: [{ id: 'c1' }, { id: 'c2' }] });
    expect(withTools[4]).toMatchObject({ role: 'tool', toolCallId: 'c1' });

    // Every budget: a tool message is never the first one, and its call is right before it.
    const total = withTools.reduce((n, m) => n + replyTokens({ summary: null, messages: [m] }), 0);
    for (let budget = 1; budget <= total; budget++) {
      const got = selectMessages(entries, { maxTokens: budget, tools: true });
      expect(replyTokens({ summary: null, messages: got })).toBeLessThanOrEqual(budget);
      got.forEach((m, i) => {
        if (m.role !== 'tool') return;
        const call = got.slice(0, i).findLast((p) => p.role !== 'tool');
        expect(call?.role === 'assistant' && call.toolCalls?.some((c) => c.id === m.toolCallId)).toBe(true);
      });
      expect(got.filter((m) => m.role === 'tool').length % 2, `budget ${budget}`).toBe(0);
    }
    // A result whose call is gone (bounded away) is never returned.
    const orphan = entries.filter((e) => !(e.role === 'assistant' && e.toolCalls));
    expect(selectMessages(orphan, { ...all, tools: true }).some((m) => m.role === 'tool')).toBe(false);
  });
});

describe('window and summary', () => {
  const turns = (n: number, from = 1): HistoryEntry[] =>
    Array.from({ length: n }, (_, i) => [
      h(`t${from + i}`, 'user', `question number ${from + i} about topic ${from + i}`),
      h(`t${from + i}`, 'assistant', `answer number ${from + i}, with a few more words in it`),
    ]).flat();

  it('folds everything but the recent window once enough piled up, at turn boundaries', () => {
    const opts = { keepRecent: 12, summarizeAfter: 20 };
    expect(planFold(turns(10), opts)).toBe(0);
    expect(planFold(turns(11), opts)).toBe(10);
    // An odd window would split a turn: the cut moves back to the turn's start.
    expect(planFold(turns(11), { keepRecent: 11, summarizeAfter: 20 })).toBe(10);
    // A turn with a tool round (4 entries) stays whole.
    const withTools = addToolExchange(
      turns(11),
      {
        turnId: 't6',
        calls: [{ call: { id: 'c', name: 'x', arguments: '{}' }, result: '1', ok: true, durationMs: 1 }],
      },
      100,
    );
    const cut = planFold(withTools, opts);
    expect(withTools[cut - 1]!.turnId).not.toBe(withTools[cut]!.turnId);
  });

  it('applies a summary to what the document is now (entries added meanwhile stay)', () => {
    const doc: HistoryDoc = { summary: null, summarized: 0, entries: turns(11) };
    const folded = doc.entries.slice(0, 10);
    const later = { ...doc, entries: [...doc.entries, ...turns(1, 12)] };
    const next = applyFold(later, folded, 'They talked about topics 1 to 5.');
    expect(next).toMatchObject({
      summary: 'They talked about topics 1 to 5.',
      summarized: 10,
      summarizedThrough: 't5',
    });
    expect(next.entries.map((e) => e.turnId)).toEqual([
      't6',
      't6',
      't7',
      't7',
      't8',
      't8',
      't9',
      't9',
      't10',
      't10',
      't11',
      't11',
      't12',
      't12',
    ]);
  });

  it('fits summary + latest messages into every budget; a summary longer than the budget is cut', () => {
    const doc: HistoryDoc = {
      summary: 'The user asked about many things. '.repeat(30).trim(),
      summarized: 40,
      entries: turns(6, 21),
    };
    for (const maxTokens of [1, 5, 10, 20, 40, 80, 150, 300, 600, 5000]) {
      const reply = buildContext(doc, { maxTokens });
      expect(replyTokens(reply), `budget ${maxTokens}`).toBeLessThanOrEqual(maxTokens);
      // The latest messages are verbatim, and a newer one is never dropped for an older one.
      const tail = doc.entries.slice(doc.entries.length - reply.messages.length).map((e) => e.content);
      expect(contents(reply.messages)).toEqual(tail);
    }
    const big = buildContext(doc, { maxTokens: 5000 });
    expect(big.summary).toBe(doc.summary);
    expect(big.messages).toHaveLength(12);
    const small = buildContext(doc, { maxTokens: 60 });
    expect(small.summary!.length).toBeLessThan(doc.summary!.length);
    expect(small.summary!.endsWith('…')).toBe(true);
    expect(small.messages.length, 'a small budget still gets the latest turn').toBeGreaterThan(0);
  });
});
