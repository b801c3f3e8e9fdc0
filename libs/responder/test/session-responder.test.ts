import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { Reply, ToolExchange, Turn } from '@va/protocol';
import { FakeLLM } from '@va/providers';
import { context } from '@va/telemetry';
import { TurnAnswer, type AnswerOutput, type AnswerSettings, type TurnVerdicts } from '../src/answer.js';
import { SessionResponder, type AnsweringState, type SessionResponderIo } from '../src/session-responder.js';
import { ToolRegistry } from '../src/tools.js';

const root = context.active();
const turn = (turnId: string, kind: Turn['kind'], text = 'what time is it'): Turn => ({
  turnId,
  kind,
  text,
  eouProb: 1,
  speechEndMs: 0,
});

/** The session's bookkeeping with answers that finish when the test says so. */
function sessionWithManualAnswers(retries = true) {
  const answers: { turn: Turn; retried: boolean; finish: () => void }[] = [];
  const kept: (AnsweringState | 'dropped')[] = [];
  const cancelled = new Map<string, string>();
  const io: SessionResponderIo = {
    answer: (t, _parent, retried) =>
      new Promise<void>((resolve) => answers.push({ turn: t, retried, finish: resolve })),
    isCancelled: (id) => cancelled.has(id),
    cancelReason: (id) => cancelled.get(id),
    closing: false,
    ...(retries
      ? { keepAnswering: { keep: (s) => kept.push(s), drop: () => kept.push('dropped'), trace: () => ({}) } }
      : {}),
  };
  return { session: new SessionResponder(io), answers, kept, cancelled };
}

describe('SessionResponder (which turns a responder answers, without NATS)', () => {
  it('unknown → previewed → committed → finished: a committed preview is not started twice', async () => {
    const { session, answers, kept } = sessionWithManualAnswers();
    expect(session.stateOf('t1')).toBe('unknown');
    session.turn(turn('t1', 'preview'), root);
    expect(session.stateOf('t1')).toBe('previewed');
    session.turn(turn('t1', 'end'), root);
    expect(session.stateOf('t1')).toBe('committed');
    expect(answers).toHaveLength(1);
    expect(kept).toEqual([{ turn: turn('t1', 'end'), trace: {} }]);
    answers[0]!.finish();
    await new Promise((r) => setImmediate(r));
    expect(session.stateOf('t1')).toBe('finished');
    expect(kept.at(-1)).toBe('dropped');
  });

  it('ignores barge-in/resume and empty turns; a committed turn without preview starts at once', () => {
    const { session, answers } = sessionWithManualAnswers();
    session.turn(turn('t1', 'barge-in', ''), root);
    session.turn(turn('t2', 'end', '  '), root);
    expect(answers).toEqual([]);
    session.turn(turn('t3', 'end'), root);
    expect(answers.map((a) => a.turn.turnId)).toEqual(['t3']);
  });

  it('a preview waits for its verdict: committed resolves it, a timeout or abort does too', async () => {
    const { session } = sessionWithManualAnswers();
    session.turn(turn('t1', 'preview'), root);
    let ruled = false;
    const waiting = session.verdict('t1', new AbortController().signal).then(() => (ruled = true));
    await new Promise((r) => setImmediate(r));
    expect(ruled).toBe(false);
    session.turn(turn('t1', 'end'), root);
    await waiting;
    const aborted = new AbortController();
    const pending = session.verdict('t2', aborted.signal);
    aborted.abort();
    await pending;
  });

  it('a successor retries the saved committed turn once, unless it was cancelled', () => {
    const { session, answers, cancelled } = sessionWithManualAnswers();
    expect(session.retry({ turn: turn('t1', 'end'), trace: {} }, root)).toBe(true);
    expect(answers[0]).toMatchObject({ retried: true });
    expect(session.retry({ turn: turn('t1', 'end'), trace: {} }, root)).toBe(false);
    cancelled.set('t2', 'barge-in');
    expect(session.retry({ turn: turn('t2', 'end'), trace: {} }, root)).toBe(false);
  });

  it('keeps nothing for a successor when the responder does not retry (the opener)', () => {
    const { session, kept } = sessionWithManualAnswers(false);
    session.turn(turn('t1', 'end'), root);
    expect(kept).toEqual([]);
  });
});

/** What an answer sent, without a bus. */
function recordedOutput() {
  const replies: Reply[] = [];
  const tools: ToolExchange[] = [];
  const failures: string[] = [];
  const out: AnswerOutput = {
    sessionId: 's1',
    reply: (m) => replies.push(m),
    tool: (m) => tools.push(m),
    failed: (_turnId, err) => failures.push(String(err)),
    toolFailed: () => undefined,
  };
  return { out, replies, tools, failures, text: () => replies.map((r) => r.delta).join('') };
}

const committedVerdicts: TurnVerdicts = { verdict: async () => undefined, cancelReason: () => undefined };
const noHistory = async () => ({ messages: [], hit: false });

function settings(llm: FakeLLM, extra: Partial<AnswerSettings> = {}): AnswerSettings {
  return {
    stage: 'deep-responder',
    spanName: 'deep.generate',
    llm,
    system: 'You are terse.',
    llmOptions: {},
    tools: undefined,
    maxToolRounds: 3,
    apologyOnFailure: undefined,
    ...extra,
  };
}

describe('TurnAnswer (one turn answered, without NATS)', () => {
  it('streams the model text as numbered deltas, then done, with history before the words', async () => {
    const llm = new FakeLLM({ reply: 'It is four.' });
    const rec = recordedOutput();
    const history = async () => ({ messages: [{ role: 'user' as const, content: 'earlier' }], hit: true });
    const answer = new TurnAnswer(
      turn('t1', 'end'),
      root,
      new AbortController().signal,
      settings(llm),
      history,
      committedVerdicts,
      rec.out,
    );
    await answer.run();
    expect(answer.phase).toBe('done');
    expect(rec.text()).toBe('It is four.');
    expect(rec.replies.map((r) => r.seq)).toEqual(rec.replies.map((_, i) => i));
    expect(rec.replies.at(-1)).toMatchObject({ done: true, delta: '' });
    expect(llm.calls[0]!.map((m) => m.content)).toEqual(['You are terse.', 'earlier', 'what time is it']);
  });

  it('runs a tool round, sends the exchange, and answers with its result', async () => {
    const llm = new FakeLLM({
      reply: (messages) =>
        messages.some((m) => m.role === 'tool')
          ? `The answer is ${messages.at(-1)!.content}.`
          : { toolCalls: [{ name: 'add', arguments: '{"a":2,"b":3}' }] },
    });
    const tools = new ToolRegistry([
      {
        name: 'add',
        description: 'adds',
        args: z.object({ a: z.number(), b: z.number() }),
        run: async ({ a, b }) => a + b,
      },
    ]);
    const rec = recordedOutput();
    const answer = new TurnAnswer(
      turn('t1', 'end'),
      root,
      new AbortController().signal,
      settings(llm, { tools }),
      noHistory,
      committedVerdicts,
      rec.out,
    );
    await answer.run();
    expect(rec.tools[0]!.calls[0]).toMatchObject({ result: '5', ok: true });
    expect(rec.text()).toBe('The answer is 5.');
  });

  it('on a failure before any text: the error, the apology, and done', async () => {
    const llm = new FakeLLM({ fail: {} });
    const rec = recordedOutput();
    const s = settings(llm, { apologyOnFailure: 'Sorry, I cannot answer now.' });
    await new TurnAnswer(
      turn('t1', 'end'),
      root,
      new AbortController().signal,
      s,
      noHistory,
      committedVerdicts,
      rec.out,
    ).run();
    expect(rec.failures).toHaveLength(1);
    expect(rec.text()).toBe('Sorry, I cannot answer now.');
    expect(rec.replies.at(-1)?.done).toBe(true);
  });

  it('a preview holds its tool calls until the verdict; cancelled meanwhile, they never run', async () => {
    const llm = new FakeLLM({ reply: { toolCalls: [{ name: 'add', arguments: '{"a":1,"b":1}' }] } });
    let ran = 0;
    const tools = new ToolRegistry([
      { name: 'add', description: 'adds', args: z.object({ a: z.number(), b: z.number() }), run: async () => ++ran },
    ]);
    const turnSignal = new AbortController();
    const verdicts: TurnVerdicts = {
      verdict: async () => void turnSignal.abort(new Error('preempt-mismatch')),
      cancelReason: () => 'preempt-mismatch',
    };
    const rec = recordedOutput();
    const answer = new TurnAnswer(
      turn('t1', 'preview'),
      root,
      turnSignal.signal,
      settings(llm, { tools }),
      noHistory,
      verdicts,
      rec.out,
    );
    await answer.run();
    expect(ran).toBe(0);
    expect(rec.tools).toEqual([]);
    expect(rec.replies.some((r) => r.done)).toBe(false);
  });
});
