import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Bus } from '@va/bus';
import { channels, type ChatMessage, type Reply } from '@va/protocol';
import { FakeLLM, type LLMOptions } from '@va/providers';
import { toolsFromEnv } from '@va/responder';
import { startStagesInProcess, waitFor, type InProcessStages } from '@va/testkit';
import { defineToolService, RemoteTools, startToolService } from '@va/tools';
import { deepResponder } from '../src/actor.js';

const add = defineToolService({
  name: 'add_numbers',
  description: 'Adds two numbers.',
  args: z.object({ a: z.number(), b: z.number() }).strict(),
  run: async ({ a, b }) => ({ sum: a + b }),
});

/** Calls the tool when it is offered, then says what came back. */
const offered: string[][] = [];
const llm = new FakeLLM({
  reply: (messages: readonly ChatMessage[], opts: LLMOptions) => {
    offered.push((opts.tools ?? []).map((t) => t.name));
    const result = messages.find((m) => m.role === 'tool');
    if (result) return `The tool said ${result.content}.`;
    return opts.tools?.some((t) => t.name === 'add_numbers')
      ? { toolCalls: [{ name: 'add_numbers', arguments: '{"a":2,"b":3}' }] }
      : 'No tool for that.';
  },
});

let stages: InProcessStages;
let remote: RemoteTools;
let toolBus: Bus;

beforeAll(async () => {
  let tools: RemoteTools | undefined;
  stages = await startStagesInProcess([
    {
      stage: 'deep-responder',
      createActor: deepResponder(
        llm,
        toolsFromEnv(
          { TOOLS: '' },
          {
            list: () => tools?.list() ?? [],
            call: (name, args, opts) => tools!.call(name, args, opts),
          },
        ),
      ),
    },
  ]);
  remote = tools = new RemoteTools(stages.client, { discoverEveryMs: 100 }).start();
  toolBus = await Bus.connect({ stage: 'tools', servers: stages.nats.url });
});

afterAll(async () => {
  remote?.stop();
  await toolBus?.drain();
  await stages?.stop();
});

async function ask(id: string, config = {}): Promise<string> {
  const sid = await stages.open(id, config);
  const got: Reply[] = [];
  stages.client.subscribe(channels.replyDeep, sid, (r) => void got.push(r));
  await stages.client.nc.flush();
  stages.client.publish(channels.turn, sid, {
    turnId: 'q1',
    kind: 'end',
    text: 'add two and three',
    eouProb: 1,
    speechEndMs: 0,
  });
  await waitFor(() => got.at(-1)?.done === true, { message: 'the answer' });
  return got.map((r) => r.delta).join('');
}

describe('the deep responder and tool services on the bus', () => {
  it('offers a tool service once it runs, calls it by request, and answers with its result', async () => {
    expect(await ask('ts-before')).toBe('No tool for that.');
    const service = await startToolService(toolBus, add);
    await waitFor(() => remote.get('add_numbers'), { message: 'discovered' });
    expect(await ask('ts-running')).toBe('The tool said {"sum":5}.');
    // An agent offers only the tools it names.
    expect(
      await ask('ts-agent', { agent: { name: 'plain', instructions: 'Be brief.', tools: ['get_local_time'] } }),
    ).toBe('No tool for that.');
    await service.stop();
    await waitFor(() => remote.get('add_numbers') === undefined, { message: 'gone' });
    expect(await ask('ts-stopped')).toBe('No tool for that.');
    expect(offered.some((names) => names.includes('add_numbers'))).toBe(true);
  });
});
