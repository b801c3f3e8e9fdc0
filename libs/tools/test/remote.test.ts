import { Svcm } from '@nats-io/services';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Bus } from '@va/bus';
import { subjects, TOOL_METADATA, TOOL_SERVICE_KIND } from '@va/protocol';
import { startNatsServer, type NatsServerHandle } from '@va/testkit';
import { defineToolService, RemoteTools, startToolService } from '../src/index.js';

let nats: NatsServerHandle;
let toolBus: Bus;
let deepBus: Bus;

const echo = defineToolService({
  name: 'echo',
  description: 'Says the words back.',
  args: z.object({ words: z.string() }).strict(),
  run: async ({ words }) => ({ said: words }),
});
const slow = defineToolService({
  name: 'slow',
  description: 'Takes its time.',
  args: z.object({}).strict(),
  run: () => new Promise((r) => setTimeout(() => r('late'), 1_500)),
});

beforeAll(async () => {
  nats = await startNatsServer();
  toolBus = await Bus.connect({ stage: 'tools', servers: nats.url });
  deepBus = await Bus.connect({ stage: 'deep-responder', servers: nats.url });
  await startToolService(toolBus, echo);
  await startToolService(toolBus, slow);
  // A service that says it is a tool and answers garbage.
  const garbage = await new Svcm(toolBus.nc as unknown as ConstructorParameters<typeof Svcm>[0]).add({
    name: 'garbage',
    version: '0.0.1',
    metadata: { [TOOL_METADATA.kind]: TOOL_SERVICE_KIND },
  });
  garbage.addEndpoint('call', {
    subject: subjects.toolService('garbage'),
    metadata: { [TOOL_METADATA.description]: 'Answers nonsense.', [TOOL_METADATA.parameters]: '{"type":"object"}' },
    handler: (_err, msg) => void msg.respond('<html>oops</html>'),
  });
});

afterAll(async () => {
  await toolBus?.drain();
  await deepBus?.drain();
  await nats?.stop();
});

describe('tool services seen from the deep responder (RemoteTools)', () => {
  it('discovers every running tool; calls return results or errors the model can read, never throws', async () => {
    const tools = new RemoteTools(deepBus);
    await tools.refresh();
    expect(
      tools
        .list()
        .map((t) => t.name)
        .sort(),
    ).toEqual(['echo', 'garbage', 'slow']);
    const open = { signal: new AbortController().signal, timeoutMs: 500 };
    expect(await tools.call('echo', '{"words":"hi"}', open)).toEqual({ result: { said: 'hi' } });
    // The service checks the arguments against its schema.
    expect(await tools.call('echo', '{"word":"hi"}', open)).toMatchObject({
      error: expect.stringMatching(/^bad arguments for echo/),
    });
    expect(await tools.call('garbage', '{}', open)).toEqual({
      error: 'garbage answered something that is not a tool reply',
    });
    expect(await tools.call('slow', '{}', open)).toEqual({ error: 'slow timed out after 500 ms' });
    const cancel = new AbortController();
    const call = tools.call('slow', '{}', { signal: cancel.signal, timeoutMs: 5_000 });
    cancel.abort();
    expect(await call).toEqual({ error: 'cancelled' });
    expect(await tools.call('nope', '{}', open)).toEqual({ error: 'there is no tool named nope' });
  });
});
