import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentStore } from '@va/agents';
import { BUCKETS, channels, type AgentChange, type ChatMessage, type Reply } from '@va/protocol';
import { FakeLLM, type LLMOptions } from '@va/providers';
import { ANSWER_PROMPT, createResponderActor, OPENER_PROMPT, ToolRegistry } from '@va/responder';
import { ActorInstances, startStagesInProcess, waitFor, type InProcessStages } from '@va/testkit';

const RECEPTION = {
  name: 'reception',
  instructions: 'You route callers to the right desk.',
  persona: 'Ann at the front desk.',
  handoffs: ['billing'],
};
const BILLING = {
  name: 'billing',
  instructions: 'You handle invoices and payments.',
  persona: 'Bob from billing.',
  greeting: 'Billing here, how can I help with your invoice?',
};

const systemOf = (messages: readonly ChatMessage[]) => messages[0]!.content;
const fast = new FakeLLM({ reply: 'Sure.' });
/** Transfers when offered the billing desk and the user speaks of an invoice; otherwise says who it is. */
const deep = new FakeLLM({
  reply: (messages: readonly ChatMessage[], opts: LLMOptions) => {
    const said = messages.filter((m) => m.role === 'user').at(-1)!.content;
    if (/invoice/.test(said) && opts.tools?.some((t) => t.name === 'transfer_to_billing')) {
      return { toolCalls: [{ name: 'transfer_to_billing' }] };
    }
    return systemOf(messages).includes('You handle invoices') ? 'Billing answers.' : 'Reception answers.';
  },
});

let stages: InProcessStages;
let store: AgentStore;

beforeAll(async () => {
  const common = { historyTokens: 500, llmOptions: {} };
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
        tools: new ToolRegistry([]),
        handoff: { load: (_ctx, name) => new AgentStore(stages.client).get(name) },
        ...common,
      }),
    },
  ]);
  store = new AgentStore(stages.client, { create: true });
  await store.put(BILLING);
});

afterAll(async () => {
  await stages?.stop();
});

describe('handoffs', () => {
  it('the model transfers to another agent: its greeting ends the reply, and it answers from the next turn on', async () => {
    const reception = await store.put(RECEPTION);
    const sid = await stages.open('handoff-1', { agent: reception, persona: reception.persona });
    const replies: Reply[] = [];
    const changes: AgentChange[] = [];
    stages.client.subscribe(channels.replyDeep, sid, (r) => void replies.push(r));
    stages.client.subscribe(channels.agent, sid, (c) => void changes.push(c));
    await stages.client.nc.flush();
    const turn = async (turnId: string, text: string) => {
      stages.client.publish(channels.turn, sid, { turnId, kind: 'end', text, eouProb: 1, speechEndMs: 0 });
      await waitFor(() => replies.some((r) => r.turnId === turnId && r.done), { message: `the answer to ${turnId}` });
      return replies
        .filter((r) => r.turnId === turnId)
        .map((r) => r.delta)
        .join('');
    };

    expect(await turn('t1', 'hello')).toBe('Reception answers.');
    // The model sees the handoff as a tool, calls it: the new agent's greeting is the rest of this reply.
    expect(await turn('t2', 'a question about my invoice')).toBe('Billing here, how can I help with your invoice?');
    expect(changes).toMatchObject([{ turnId: 't2', from: 'reception', agent: { name: 'billing', version: 1 } }]);
    // From the next reply on: billing's instructions and persona, its tools (no handoff back). The history is
    // session-context's, which a handoff does not touch.
    expect(await turn('t3', 'what is due')).toBe('Billing answers.');
    const deepCall = deep.calls.at(-1)!;
    expect(systemOf(deepCall)).toContain('You handle invoices and payments.');
    expect(systemOf(deepCall)).toContain('Persona: Bob from billing.');
    const fastSystem = await waitFor(() => fast.calls.map(systemOf).find((s) => s.includes('Bob from billing')));
    expect(fastSystem).not.toContain('You handle invoices');
  });
});

describe('a handed-over session taken over by another instance', () => {
  it('keeps the new agent: the successor answers as billing', async () => {
    const instances = await ActorInstances.start();
    try {
      const agents = new AgentStore(instances.client, { create: true });
      await agents.put(BILLING);
      const reception = await agents.put(RECEPTION);
      const factory = createResponderActor({
        stage: 'deep-responder',
        source: 'deep',
        llm: deep,
        systemPrompt: ANSWER_PROMPT,
        tools: new ToolRegistry([]),
        handoff: { load: (_ctx, name) => new AgentStore(instances.client).get(name) },
        historyTokens: 500,
        llmOptions: {},
      });
      const first = await instances.add('deep-responder', factory);
      const sid = await instances.open('handoff-takeover', { agent: reception }, ['deep-responder']);
      expect(first.host.sessionIds).toContain(sid);
      const replies: Reply[] = [];
      instances.client.subscribe(channels.replyDeep, sid, (r) => void replies.push(r));
      await instances.client.nc.flush();
      const answer = async (turnId: string, text: string) => {
        instances.client.publish(channels.turn, sid, { turnId, kind: 'end', text, eouProb: 1, speechEndMs: 0 });
        await waitFor(() => replies.some((r) => r.turnId === turnId && r.done), { message: turnId });
        return replies
          .filter((r) => r.turnId === turnId)
          .map((r) => r.delta)
          .join('');
      };
      expect(await answer('k1', 'about my invoice')).toBe(BILLING.greeting);
      // The new agent is written to va_state just after the switch.
      const state = await instances.client.kv(BUCKETS.state);
      await waitFor(async () => (await state.get(`deep-responder.${sid}.agent`))?.operation === 'PUT', {
        message: 'the new agent kept',
      });
      const second = await instances.add('deep-responder', factory);
      const taken = second.claims(sid);
      await first.crash();
      await taken;
      expect(await answer('k2', 'what is due')).toBe('Billing answers.');
    } finally {
      await instances.stop();
    }
  });
});
