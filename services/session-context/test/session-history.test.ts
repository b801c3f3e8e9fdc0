import { describe, expect, it } from 'vitest';
import { EMPTY_DOC, type HistoryDoc } from '@va/context';
import type { Turn } from '@va/protocol';
import { context } from '@va/telemetry';
import { CONTEXT_DEFAULTS } from '../src/options.js';
import { SessionHistory, type SessionHistoryIo } from '../src/session-history.js';
import type { Summarizer } from '../src/summarizer.js';

const root = context.active();
const userTurn = (turnId: string, text: string): Turn => ({ turnId, kind: 'end', text, eouProb: 1, speechEndMs: 0 });

/** KV writes that finish when the test says so, and a summarizer that records what it was given. */
function setup(options: { keepRecent?: number; summarizeAfter?: number; failSummary?: boolean } = {}) {
  const writes: HistoryDoc[] = [];
  const pending: (() => void)[] = [];
  const summarized: number[] = [];
  const session = new AbortController();
  const io: SessionHistoryIo = {
    sessionId: 's1',
    stage: 'session-context',
    signal: session.signal,
    put: (doc) =>
      new Promise<void>((resolve) => {
        writes.push(doc);
        pending.push(resolve);
      }),
    track: (work) => work,
    warn: () => undefined,
    error: () => undefined,
  };
  const summarizer: Summarizer = {
    provider: 'test',
    model: 'test',
    summarize: async ({ entries }) => {
      summarized.push(entries.length);
      if (options.failSummary) throw new Error('model down');
      return `summary of ${entries.length}`;
    },
  };
  const history = new SessionHistory(EMPTY_DOC, { ...CONTEXT_DEFAULTS, ...options, summarizer }, io);
  const release = async () => {
    while (pending.length > 0) {
      pending.shift()!();
      await new Promise((r) => setImmediate(r));
    }
  };
  return { history, writes, release, summarized, session };
}

describe('SessionHistory (session-context per session, without NATS)', () => {
  it('records the user turn, the tool round and what was played, in turn order', async () => {
    const { history, release } = setup();
    history.userTurn(userTurn('t1', 'what time is it'), root);
    history.toolExchange(
      {
        turnId: 't1',
        calls: [{ call: { id: 'c1', name: 'clock', arguments: '{}' }, result: '"4pm"', ok: true, durationMs: 3 }],
      },
      root,
    );
    history.played({ turnId: 't1', playedMs: 900, spokenText: 'It is four.', done: true, interrupted: false }, root);
    history.played({ turnId: 't2', playedMs: 10, spokenText: 'ignored', done: false, interrupted: false }, root);
    await release();
    expect(history.doc.entries.map((e) => e.role)).toEqual(['user', 'assistant', 'tool', 'assistant']);
    expect(history.doc.entries.at(-1)).toMatchObject({ content: 'It is four.' });
  });

  it('idle → writing: one write in flight; changes meanwhile go out together in the next, never older ones', async () => {
    const { history, writes, release } = setup();
    history.userTurn(userTurn('t1', 'one'), root);
    expect(history.state.write).toBe('writing');
    history.userTurn(userTurn('t2', 'two'), root);
    history.userTurn(userTurn('t3', 'three'), root);
    expect(writes).toHaveLength(1);
    await release();
    expect(writes).toHaveLength(2);
    expect(writes[1]!.entries.map((e) => e.content)).toEqual(['one', 'two', 'three']);
    expect(history.state.write).toBe('idle');
  });

  it('folds older turns into a summary once enough piled up, keeping the recent ones', async () => {
    const { history, release, summarized } = setup({ keepRecent: 2, summarizeAfter: 4 });
    for (let i = 1; i <= 5; i++) history.userTurn(userTurn(`t${i}`, `turn ${i}`), root);
    await release();
    await history.settled();
    await release();
    expect(summarized[0]).toBe(3);
    expect(history.doc.summary).toBe('summary of 3');
    expect(history.doc.entries.map((e) => e.content)).toEqual(['turn 4', 'turn 5']);
  });

  it('a failed summary leaves the history whole and is retried at the next turn', async () => {
    const { history, release, summarized } = setup({ keepRecent: 1, summarizeAfter: 2, failSummary: true });
    for (let i = 1; i <= 3; i++) history.userTurn(userTurn(`t${i}`, `turn ${i}`), root);
    await release();
    await history.settled();
    expect(history.state.summary).toBe('idle');
    expect(history.doc.entries).toHaveLength(3);
    history.userTurn(userTurn('t4', 'turn 4'), root);
    await release();
    await history.settled();
    expect(summarized.length).toBe(2);
  });
});
