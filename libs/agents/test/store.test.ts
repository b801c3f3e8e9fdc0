import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '@va/bus';
import { startNatsServer, type NatsServerHandle } from '@va/testkit';
import { AgentProfileError, AgentStore, parseAgentProfile, readProfileFile, UnknownAgentError } from '../src/index.js';

let nats: NatsServerHandle;
let writerBus: Bus;
let readerBus: Bus;

beforeAll(async () => {
  nats = await startNatsServer();
  writerBus = await Bus.connect({ stage: 'agents', servers: nats.url });
  readerBus = await Bus.connect({ stage: 'media-gateway', servers: nats.url });
});

afterAll(async () => {
  await writerBus?.drain();
  await readerBus?.drain();
  await nats?.stop();
});

const concierge = {
  name: 'concierge',
  instructions: 'You book tables at Chez Nous. Ask for the day, the time and the number of guests.',
  greeting: 'Hello, Chez Nous, how can I help?',
  tools: ['get_local_time'],
};

describe('agent profiles in va_agents', () => {
  it('a reader sees no profiles before anyone wrote one, and the built-in agent when none is named', async () => {
    const reader = new AgentStore(readerBus);
    expect(await reader.list()).toEqual([]);
    expect(await reader.resolve()).toBeUndefined();
    await expect(reader.resolve('concierge')).rejects.toThrow(UnknownAgentError);
  });

  it('stores versions, lists, gets past versions, removes; a change applies to the next resolve at once', async () => {
    const writer = new AgentStore(writerBus, { create: true });
    const reader = new AgentStore(readerBus);
    expect(await writer.put(concierge)).toMatchObject({ name: 'concierge', version: 1, tools: ['get_local_time'] });
    expect(await reader.resolve('concierge')).toMatchObject({ version: 1, greeting: concierge.greeting });

    // A new version without a version number counts up; the reader's next session gets it.
    await writer.put({ ...concierge, greeting: 'Bonjour, Chez Nous!' });
    expect(await reader.resolve('concierge')).toMatchObject({ version: 2, greeting: 'Bonjour, Chez Nous!' });
    expect(await reader.get('concierge', 1)).toMatchObject({ version: 1, greeting: concierge.greeting });
    // Going back in versions is refused, naming both.
    await expect(writer.put({ ...concierge, version: 2 })).rejects.toThrow(
      /version 2 of concierge is not newer than the stored version 2/,
    );
    await writer.put({ ...concierge, version: 7 });
    expect((await reader.get('concierge'))?.version).toBe(7);

    await writer.put({ name: 'default', instructions: 'Be brief.' });
    expect((await reader.list()).map((p) => [p.name, p.version])).toEqual([
      ['concierge', 7],
      ['default', 1],
    ]);
    expect(await reader.resolve()).toMatchObject({ name: 'default', instructions: 'Be brief.' });

    expect(await writer.remove('default')).toBe(true);
    expect(await writer.remove('default')).toBe(false);
    expect(await reader.resolve()).toBeUndefined();
    expect((await reader.list()).map((p) => p.name)).toEqual(['concierge']);
  });

  it('refuses a bad profile with the schema’s message and stores nothing', async () => {
    const writer = new AgentStore(writerBus, { create: true });
    const bad = [
      [{ ...concierge, name: 'Bad Name!' }, /name: must be 1–63 of a-z 0-9/],
      [{ ...concierge, instructions: '' }, /instructions: may not be empty/],
      [{ ...concierge, tools: ['get time'] }, /tools\.0: must be 1–64/],
      [{ ...concierge, turn: { minDelayMs: -5 } }, /turn\.minDelayMs/],
      [{ ...concierge, avatar: 'camille.png' }, /Unrecognized key.*avatar/],
      ['not an object', /invalid agent profile/],
    ] as const;
    for (const [input, message] of bad) {
      const err = await writer.put(input).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AgentProfileError);
      expect((err as Error).message).toMatch(message);
    }
    expect((await writer.list()).map((p) => p.name)).toEqual(['concierge']);
  });
});

describe('the example profiles (examples/agents)', () => {
  it('are valid, and the YAML one is the JSON one', async () => {
    const dir = fileURLToPath(new URL('../../../examples/agents/', import.meta.url));
    const files = (await readdir(dir)).filter((f) => /\.(json|ya?ml)$/.test(f));
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) expect(parseAgentProfile(await readProfileFile(join(dir, f))).name, f).toBe('concierge');
    const [json, yaml] = await Promise.all(
      ['concierge.json', 'concierge.yaml'].map((f) => readProfileFile(join(dir, f))),
    );
    expect(parseAgentProfile(yaml)).toEqual(parseAgentProfile(json));
  });
});
