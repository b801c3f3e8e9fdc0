import { describe, expect, it } from 'vitest';
import { estimateTokens, MAX_ENTRIES, selectMessages, upsert, type HistoryEntry } from '../src/history.js';

const h = (turnId: string, role: 'user' | 'assistant', content: string): HistoryEntry => ({ turnId, role, content });

describe('session history', () => {
  const history = [
    h('t1', 'user', 'what is the weather'),
    h('t1', 'assistant', 'Let me check. It is sunny.'),
    h('t2', 'user', 'and tomorrow'),
    h('t2', 'assistant', 'Rain is expected.'),
    h('t3', 'user', 'should I take an umbrella'),
  ];

  it('keeps the newest messages that fit the budget, oldest first', () => {
    expect(selectMessages(history, 10_000).map((m) => m.content)).toEqual(history.map((e) => e.content));
    const budget = estimateTokens('Rain is expected.') + estimateTokens('should I take an umbrella');
    expect(selectMessages(history, budget).map((m) => m.content)).toEqual([
      'Rain is expected.',
      'should I take an umbrella',
    ]);
    expect(selectMessages(history, 1)).toEqual([]);
  });

  it('gives the history as it stood before a turn', () => {
    expect(selectMessages(history, 10_000, 't3').map((m) => m.content)).toEqual(
      history.slice(0, 4).map((e) => e.content),
    );
    expect(selectMessages(history, 10_000, 'unknown')).toHaveLength(5);
  });

  it('stores a turn once even when it is reported twice, and stays bounded', () => {
    const once = upsert(upsert(history, h('t3', 'assistant', 'Yes.')), h('t3', 'assistant', 'Yes, take one.'));
    expect(once.filter((e) => e.turnId === 't3' && e.role === 'assistant')).toEqual([
      h('t3', 'assistant', 'Yes, take one.'),
    ]);
    let long: HistoryEntry[] = [];
    for (let i = 0; i < MAX_ENTRIES + 20; i++) long = upsert(long, h(`t${i}`, 'user', `message ${i}`));
    expect(long).toHaveLength(MAX_ENTRIES);
    expect(long[long.length - 1]!.content).toBe(`message ${MAX_ENTRIES + 19}`);
  });

  it('drops empty messages (an answer interrupted before a word was heard)', () => {
    expect(selectMessages([h('t1', 'user', 'hi'), h('t1', 'assistant', '')], 100)).toEqual([
      { role: 'user', content: 'hi' },
    ]);
  });
});
