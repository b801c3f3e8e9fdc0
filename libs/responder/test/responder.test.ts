import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '@va/bus';
import { startStagesInProcess, type InProcessStages } from '@va/testkit';
import { BUCKETS, channels, type Reply, type SessionId } from '@va/protocol';
import { FakeLLM } from '@va/providers';
import { ANSWER_PROMPT, createResponderActor, OPENER_PROMPT } from '@va/responder';
import { waitFor } from '@va/testkit';

let stages: InProcessStages;
let client: Bus;
const fast = new FakeLLM({ reply: 'Sure, one moment.', ttftMs: 5, tokensPerSecond: 200 });
const deep = new FakeLLM({
  reply: (messages) =>
    `You said ${messages[messages.length - 1]!.content}. Here is a long answer that goes on and on and on.`,
  ttftMs: 30,
  tokensPerSecond: 20,
});

/** Writes a session's history as session-context does (its key in the state bucket), for the replica to find. */
async function storeHistory(sid: string, entries: { turnId: string; role: 'user' | 'assistant'; content: string }[]) {
  const kv = await client.kv(BUCKETS.state);
  await kv.put(`session-context.${sid}.history`, JSON.stringify({ summary: null, summarized: 0, entries }));
}

beforeAll(async () => {
  const common = { historyTokens: 100, llmOptions: {} };
  stages = await startStagesInProcess([
    {
      stage: 'fast-responder',
      createActor: createResponderActor({
        stage: 'fast-responder',
        source: 'fast',
        llm: fast,
        systemPrompt: OPENER_PROMPT,
        ...common,
      }),
    },
    {
      stage: 'deep-responder',
      createActor: createResponderActor({
        stage: 'deep-responder',
        source: 'deep',
        llm: deep,
        systemPrompt: ANSWER_PROMPT,
        ...common,
      }),
    },
  ]);
  client = stages.client;
});

afterAll(async () => {
  await stages?.stop();
});

describe('fast and deep responders', () => {
  it('both start at turn end, stream their replies with history, and close each stream', async () => {
    // Stands in for session-context: one earlier exchange, stored before the session opens here.
    await storeHistory('resp-1', [
      { turnId: 'q0', role: 'user', content: 'earlier question' },
      { turnId: 'q0', role: 'assistant', content: 'earlier answer' },
      // Already recorded by session-context when the turn ends: not given twice.
      { turnId: 'q1', role: 'user', content: 'what time is it' },
    ]);
    const sid = await stages.open('resp-1');
    const got = { fast: [] as Reply[], deep: [] as Reply[] };
    client.subscribe(channels.replyFast, sid, (r) => void got.fast.push(r));
    client.subscribe(channels.replyDeep, sid, (r) => void got.deep.push(r));
    await client.nc.flush();
    client.publish(channels.turn, sid, {
      turnId: 'q1',
      kind: 'end',
      text: 'what time is it',
      eouProb: 0.9,
      speechEndMs: 10,
    });

    await waitFor(() => got.fast.at(-1)?.done === true && got.deep.at(-1)?.done === true, { timeoutMs: 15_000 });
    expect(got.fast.map((r) => r.delta).join('')).toBe('Sure, one moment.');
    expect(got.deep.map((r) => r.delta).join('')).toMatch(/^You said what time is it\./);
    for (const stream of [got.fast, got.deep]) expect(stream.map((r) => r.seq)).toEqual(stream.map((_, i) => i));
    // The opener never waited for the answer: it finished while the answer was still streaming.
    expect(got.deep.length).toBeGreaterThan(got.fast.length);

    // The prompt: system, the history before this turn, then the turn's own words.
    const [fastCall] = fast.calls.slice(-1);
    expect(fastCall!.map((m) => m.role)).toEqual(['system', 'user', 'assistant', 'user']);
    expect(fastCall![0]!.content).toBe(OPENER_PROMPT);
    expect(fastCall![3]!.content).toBe('what time is it');
  });

  it('reads history from its replica, which follows what session-context writes', async () => {
    const sid: SessionId = await stages.open('resp-3');
    const done = { fast: 0 };
    client.subscribe(channels.replyFast, sid, (r) => void (r.done && done.fast++));
    await client.nc.flush();
    const turn = (turnId: string, text: string) =>
      client.publish(channels.turn, sid, { turnId, kind: 'end', text, eouProb: 0.9, speechEndMs: 10 });
    turn('r1', 'first question');
    await waitFor(() => done.fast === 1);
    expect(fast.calls.at(-1)!.map((m) => m.role)).toEqual(['system', 'user']);
    // session-context records the exchange after the answer played; the next turn's prompt has it, unasked.
    await storeHistory('resp-3', [
      { turnId: 'r1', role: 'user', content: 'first question' },
      { turnId: 'r1', role: 'assistant', content: 'Sure, one moment.' },
    ]);
    await waitFor(async () => {
      const before = done.fast;
      turn(`r${before + 1}`, 'second question');
      await waitFor(() => done.fast === before + 1);
      return fast.calls.at(-1)!.length === 4;
    });
    expect(fast.calls.at(-1)!.map((m) => m.content)).toEqual([
      OPENER_PROMPT,
      'first question',
      'Sure, one moment.',
      'second question',
    ]);
  });

  it('answers as the session’s agent: its instructions in the answer’s prompt, its persona in both', async () => {
    const sid = await stages.open('resp-agent', {
      persona: 'Camille, warm and brief.',
      agent: { name: 'concierge', version: 3, instructions: 'You book tables at Chez Nous.', tools: [] },
    });
    client.publish(channels.turn, sid, {
      turnId: 'a1',
      kind: 'end',
      text: 'a table please',
      eouProb: 1,
      speechEndMs: 0,
    });
    const systemOf = (llm: FakeLLM) =>
      waitFor(() => llm.calls.find((c) => c.some((m) => m.role === 'user' && m.content === 'a table please'))?.[0]);
    const [deepSystem, fastSystem] = await Promise.all([systemOf(deep), systemOf(fast)]);
    expect(deepSystem.content).toMatch(new RegExp(`^${escape(ANSWER_PROMPT)}`));
    expect(deepSystem.content).toMatch(
      /Your instructions:\nYou book tables at Chez Nous\.\n\nPersona: Camille, warm and brief\.$/,
    );
    expect(fastSystem.content).toBe(`${OPENER_PROMPT}\n\nPersona: Camille, warm and brief.`);
  });

  it('asks for the models the session’s agent names, each responder its own', async () => {
    const sid = await stages.open('resp-models', {
      agent: { name: 'big', version: 1, instructions: 'Think hard.', tools: [], models: { deep: 'large-model' } },
    });
    client.publish(channels.turn, sid, { turnId: 'm1', kind: 'end', text: 'which model', eouProb: 1, speechEndMs: 0 });
    const optionsOf = (llm: FakeLLM) =>
      waitFor(() => {
        const i = llm.calls.findIndex((c) => c.some((m) => m.role === 'user' && m.content === 'which model'));
        return i >= 0 ? llm.options[i] : undefined;
      });
    expect((await optionsOf(deep)).model).toBe('large-model');
    expect((await optionsOf(fast)).model).toBeUndefined();
  });

  it('an agent turn (a greeting): the deep responder says its text as written, no model, no opener', async () => {
    const sid = await stages.open('resp-greet');
    const got = { fast: [] as Reply[], deep: [] as Reply[] };
    client.subscribe(channels.replyFast, sid, (r) => void got.fast.push(r));
    client.subscribe(channels.replyDeep, sid, (r) => void got.deep.push(r));
    await client.nc.flush();
    const calls = { fast: fast.calls.length, deep: deep.calls.length };
    client.publish(channels.turn, sid, {
      turnId: 'g1',
      kind: 'agent',
      text: 'Hello there!',
      eouProb: 1,
      speechEndMs: 0,
    });
    await waitFor(() => got.deep.length === 1, { message: 'the greeting' });
    expect(got.deep).toEqual([{ turnId: 'g1', seq: 0, delta: 'Hello there!', done: true }]);
    await new Promise((r) => setTimeout(r, 200));
    expect(got.fast).toEqual([]);
    expect({ fast: fast.calls.length, deep: deep.calls.length }).toEqual(calls);
  });

  it('stops generating when the turn is cancelled', async () => {
    const sid = await stages.open('resp-2');
    const deltas: Reply[] = [];
    client.subscribe(channels.replyDeep, sid, (r) => void deltas.push(r));
    await client.nc.flush();
    const abortedBefore = deep.aborted;
    client.publish(channels.turn, sid, {
      turnId: 'q2',
      kind: 'end',
      text: 'tell me everything',
      eouProb: 0.9,
      speechEndMs: 10,
    });
    await waitFor(() => deltas.length >= 2);
    client.publish(channels.control, sid, { kind: 'cancel', turnId: 'q2', reason: 'barge-in' });
    await waitFor(() => deep.aborted === abortedBefore + 1, { message: 'the deep LLM stream was aborted' });
    const count = deltas.length;
    await new Promise((r) => setTimeout(r, 300));
    expect(deltas.length).toBe(count);
    expect(deltas.some((d) => d.done)).toBe(false);
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
