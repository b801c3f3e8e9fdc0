import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineTool, localTimeTool, ToolRegistry, toolsFromEnv } from '@va/responder';

const echo = defineTool({
  name: 'echo',
  description: 'Says the words back.',
  args: z.object({ words: z.string().describe('what to say') }).strict(),
  run: async ({ words }) => ({ said: words }),
});
const failing = defineTool({
  name: 'failing',
  description: 'Always fails.',
  args: z.object({}).strict(),
  run: () => Promise.reject(new Error('database is down')),
});
/** Ignores its signal: the registry's timeout must hold anyway. */
const deaf = defineTool({
  name: 'deaf',
  description: 'Never answers and never listens.',
  args: z.object({}).strict(),
  timeoutMs: 50,
  run: () => new Promise(() => undefined),
});
const never = () => new AbortController().signal;
const call = (name: string, args = '{}') => ({ id: `call_${name}`, name, arguments: args });

describe('tool registry', () => {
  const tools = new ToolRegistry([echo, failing, deaf]);

  it('shows the model each tool as an OpenAI function with a JSON Schema of its arguments', () => {
    expect(tools.specs[0]).toEqual({
      name: 'echo',
      description: 'Says the words back.',
      parameters: {
        type: 'object',
        properties: { words: { type: 'string', description: 'what to say' } },
        required: ['words'],
        additionalProperties: false,
      },
    });
    expect(() => new ToolRegistry([echo, echo])).toThrow(/unique/);
  });

  it('narrows to the tools an agent may use (unknown names ignored), with the same options', async () => {
    const agentTools = tools.only(['echo', 'not_here']);
    expect(agentTools.specs.map((t) => t.name)).toEqual(['echo']);
    expect(agentTools.size).toBe(1);
    expect(tools.only([]).size).toBe(0);
    const denied = await agentTools.call({ id: 'c', name: 'failing', arguments: '{}' }, new AbortController().signal);
    expect(denied.outcome).toBe('unknown-tool');
  });

  it('runs a call with checked arguments and returns its JSON', async () => {
    const r = await tools.call(call('echo', '{"words":"hello"}'), never());
    expect(r).toMatchObject({ outcome: 'ok', content: '{"said":"hello"}' });
    // Long results are cut: every character is prompt.
    const short = new ToolRegistry([echo], { maxResultChars: 40 });
    const long = await short.call(call('echo', JSON.stringify({ words: 'x'.repeat(100) })), never());
    expect(JSON.parse(long.content)).toEqual({ partial: `{"said":"${'x'.repeat(31)}` });
  });

  it('turns every failure into an error result the model can speak about, never a throw', async () => {
    expect(await tools.call(call('nope'), never())).toMatchObject({ outcome: 'unknown-tool' });
    expect(await tools.call(call('echo', '{"words":3}'), never())).toMatchObject({ outcome: 'bad-arguments' });
    expect(await tools.call(call('echo', 'not json'), never())).toMatchObject({ outcome: 'bad-arguments' });
    const failed = await tools.call(call('failing'), never());
    expect(failed.outcome).toBe('error');
    expect(JSON.parse(failed.content)).toEqual({ error: 'failing failed: database is down' });
  });

  it('abandons a tool at its timeout even if it ignores the signal, and stops on cancel', async () => {
    const timedOut = await tools.call(call('deaf'), never());
    expect(timedOut.outcome).toBe('timeout');
    expect(JSON.parse(timedOut.content)).toEqual({ error: 'deaf timed out after 50 ms' });
    const controller = new AbortController();
    const slow = new ToolRegistry([{ ...deaf, timeoutMs: 10_000 }]);
    const pending = slow.call(call('deaf'), controller.signal);
    controller.abort();
    expect(await pending).toMatchObject({ outcome: 'cancelled' });
  });

  it('the demo tool tells the local time, in a given time zone too', async () => {
    const registry = new ToolRegistry([localTimeTool]);
    const r = await registry.call(call('get_local_time', '{"timeZone":"Asia/Tokyo"}'), never());
    expect(r.outcome).toBe('ok');
    const value = JSON.parse(r.content) as { time: string; date: string; timeZone: string };
    expect(value.timeZone).toBe('Asia/Tokyo');
    const tokyoHour = new Intl.DateTimeFormat('en-US', { hour: 'numeric', timeZone: 'Asia/Tokyo' }).format(new Date());
    expect(value.time.split(':')[0]).toBe(tokyoHour.split(' ')[0]);
    expect(value.date).toMatch(/^[A-Z][a-z]+day, [A-Z][a-z]+ \d{1,2}, \d{4}$/);
    const bad = await registry.call(call('get_local_time', '{"timeZone":"Mars/Olympus"}'), never());
    expect(bad.outcome).toBe('error');
  });

  it('is configured from TOOLS and TOOL_TIMEOUT_MS', () => {
    expect(toolsFromEnv({}).specs.map((s) => s.name)).toEqual(['get_local_time']);
    expect(toolsFromEnv({ TOOLS: '' }).size).toBe(0);
    expect(() => toolsFromEnv({ TOOLS: 'local_time,teleport' })).toThrow(/unknown tool teleport/);
    expect(() => toolsFromEnv({ TOOL_TIMEOUT_MS: '-1' })).toThrow();
  });
});

describe('tool services in the registry (a remote source)', () => {
  /** Stands in for RemoteTools: what is running can change between calls. */
  class FakeToolServices {
    running = [
      { name: 'convert_units', description: 'Converts units.', parameters: { type: 'object' } },
      { name: 'echo', description: 'A service with a local tool’s name.', parameters: { type: 'object' } },
    ];
    readonly calls: { name: string; args: string; traced: boolean }[] = [];
    list() {
      return this.running;
    }
    call(name: string, args: string, opts: { signal: AbortSignal; timeoutMs: number; context?: unknown }) {
      this.calls.push({ name, args, traced: opts.context !== undefined });
      if (name === 'convert_units') return Promise.resolve({ result: { km: 8.047 } });
      return Promise.resolve({ error: `${name} timed out after ${opts.timeoutMs} ms` });
    }
  }

  it('shows the running services after the local tools, calls them by name, and follows them as they come and go', async () => {
    const services = new FakeToolServices();
    const tools = new ToolRegistry([echo], { timeoutMs: 300 }, services);
    expect(tools.dynamic).toBe(true);
    expect(tools.specs.map((s) => s.name)).toEqual(['echo', 'convert_units']); // the local echo wins
    const ok = await tools.call(call('convert_units', '{"value":5}'), never(), undefined);
    expect(ok).toMatchObject({ outcome: 'ok', content: '{"km":8.047}' });
    expect(services.calls).toEqual([{ name: 'convert_units', args: '{"value":5}', traced: false }]);
    services.running = [{ name: 'slow', description: 'Slow.', parameters: { type: 'object' } }];
    expect(tools.specs.map((s) => s.name)).toEqual(['echo', 'slow']);
    expect(await tools.call(call('slow'), never())).toMatchObject({
      outcome: 'timeout',
      content: '{"error":"slow timed out after 300 ms"}',
    });
    expect((await tools.call(call('convert_units'), never())).outcome).toBe('unknown-tool'); // stopped meanwhile
    // An agent's list narrows the services too.
    services.running.push({ name: 'weather', description: 'Weather.', parameters: { type: 'object' } });
    expect(tools.only(['weather']).specs.map((s) => s.name)).toEqual(['weather']);
    expect((await tools.only(['weather']).call(call('slow'), never())).outcome).toBe('unknown-tool');
  });
});
