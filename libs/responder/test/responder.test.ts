import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '@va/bus';
import { startStagesInProcess, type InProcessStages } from '@va/harness';
import { channels, requests, type Reply } from '@va/protocol';
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
const historyAsked: { beforeTurnId?: string; maxTokens: number }[] = [];

beforeAll(async () => {
  const common = { historyTokens: 100, historyTimeoutMs: 500, llmOptions: {} };
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
  // Stands in for session-context: one earlier exchange.
  client.serve(requests.ctxGet, (req) => {
    historyAsked.push(req);
    return {
      messages: [
        { role: 'user' as const, content: 'earlier question' },
        { role: 'assistant' as const, content: 'earlier answer' },
      ],
      summary: null,
    };
  });
  await client.nc.flush();
});

afterAll(async () => {
  await stages?.stop();
});

describe('fast and deep responders', () => {
  it('both start at turn end, stream their replies with history, and close each stream', async () => {
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
    expect(historyAsked.every((h) => h.beforeTurnId === 'q1')).toBe(true);
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
