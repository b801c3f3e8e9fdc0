import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChatMessage } from '@va/protocol';
import {
  createProvider,
  FakeLLM,
  FallbackLLM,
  llmFromEnv,
  OpenAICompatibleLLM,
  type FailoverEvent,
  ProviderError,
  ProviderHealth,
  textOf,
  type LLM,
} from '@va/providers';
import { startLocalLlmServer, type LocalLlmServer } from '@va/local-llm';
import { freePort, waitFor } from '@va/testkit';
import { collect, describeLlmConformance } from './llm.conformance.js';

/** A tiny HTTP server whose every request is answered by `respond`; counts requests. */
async function startStubServer(
  respond: Parameters<typeof createServer>[1],
): Promise<{ url: string; requests: () => number; stop: () => Promise<void> }> {
  let requests = 0;
  const server: Server = createServer((req, res) => {
    requests++;
    req.resume();
    respond!(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    requests: () => requests,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

const error500 = (_req: unknown, res: import('node:http').ServerResponse) => {
  res.writeHead(500, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ error: { message: 'model crashed', type: 'server_error', param: null, code: null } }));
};

const ASK: ChatMessage[] = [
  { role: 'system', content: 'You are a voice assistant.' },
  { role: 'user', content: 'What is the tallest mountain in Europe?' },
];
const never = () => new AbortController().signal;

let local: LocalLlmServer;
let broken: Awaited<ReturnType<typeof startStubServer>>;
let deadUrl: string;

beforeAll(async () => {
  // Paced so a reply takes a few hundred ms: long enough to abort in the middle.
  local = await startLocalLlmServer({ ttftMs: 20, tokensPerSecond: 80 });
  broken = await startStubServer(error500);
  deadUrl = `http://127.0.0.1:${await freePort()}/v1`; // nothing listens there
});
afterAll(async () => {
  await local?.stop();
  await broken?.stop();
});

const openaiAt = (baseURL: string, extra: Partial<ConstructorParameters<typeof OpenAICompatibleLLM>[0]> = {}) =>
  new OpenAICompatibleLLM({ baseURL, apiKey: 'not-needed', model: 'local', maxRetries: 0, ...extra });

describeLlmConformance('OpenAICompatibleLLM → @va/local-llm', () => openaiAt(local.url), {
  abortsSeen: () => local.stats.disconnects,
  failing: {
    'the base URL is unreachable': () => openaiAt(deadUrl),
    'the server answers 500': () => openaiAt(broken.url),
  },
});

const fake = new FakeLLM({ ttftMs: 5, tokensPerSecond: 200 });
describeLlmConformance('FakeLLM', () => fake, {
  abortsSeen: () => fake.aborted,
  failing: { 'scripted to fail': () => new FakeLLM({ fail: {} }) },
});

// A chain whose first choice always fails: the conformance holds through the failover.
const backup = new FakeLLM({ ttftMs: 5, tokensPerSecond: 200 });
describeLlmConformance(
  'FallbackLLM (failing → FakeLLM)',
  () => new FallbackLLM([new FakeLLM({ fail: {} }), backup], { ttftTimeoutMs: 1_000 }),
  {
    abortsSeen: () => backup.aborted,
    failing: {
      'every provider fails': () =>
        new FallbackLLM([new FakeLLM({ fail: {} }), new FakeLLM({ fail: {} })], { ttftTimeoutMs: 1_000 }),
    },
  },
);

describe('OpenAICompatibleLLM', () => {
  it('retries a failed request (maxRetries) before the first token, then throws naming the endpoint', async () => {
    const before = broken.requests();
    const llm = openaiAt(broken.url, { maxRetries: 1 });
    const failure = collect(llm.chat(ASK, {}, never()));
    await expect(failure).rejects.toThrow(broken.url);
    expect(broken.requests() - before).toBe(2);
  });

  it('does not retry once the reply has started: a broken stream surfaces as an error', async () => {
    const cutOff = await startStubServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const chunk = { id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: 'm' };
      res.write(
        `data: ${JSON.stringify({ ...chunk, choices: [{ index: 0, delta: { role: 'assistant', content: 'Mont' }, finish_reason: null }] })}\n\n`,
      );
      setTimeout(() => res.destroy(), 50); // the connection dies mid-answer
    });
    try {
      const llm = openaiAt(cutOff.url, { maxRetries: 3 });
      const received: string[] = [];
      const attempt = (async () => {
        for await (const delta of textOf(llm.chat(ASK, {}, never()))) received.push(delta);
      })();
      await expect(attempt).rejects.toBeInstanceOf(Error);
      expect(received).toEqual(['Mont']);
      expect(cutOff.requests()).toBe(1);
    } finally {
      await cutOff.stop();
    }
  });

  it('ends quietly when aborted before the response has even started', async () => {
    const silent = await startStubServer(() => undefined); // never answers
    try {
      const controller = new AbortController();
      const chat = collect(openaiAt(silent.url).chat(ASK, {}, controller.signal));
      await waitFor(() => silent.requests() === 1, { message: 'request reached the server' });
      controller.abort();
      expect(await chat).toEqual([]);
    } finally {
      await silent.stop();
    }
  });

  it('sends temperature and max tokens (the local server honours max_tokens)', async () => {
    const deltas = await collect(openaiAt(local.url).chat(ASK, { temperature: 0, maxTokens: 3 }, never()));
    expect(deltas).toHaveLength(3);
  });
});

describe('OpenAICompatibleLLM: tools, usage, prompt caching', () => {
  const TOOL = {
    name: 'get_local_time',
    description: 'The current local time and date.',
    parameters: { type: 'object', properties: {}, additionalProperties: false },
  };
  const TIME: ChatMessage[] = [
    { role: 'system', content: 'You are a voice assistant.' },
    { role: 'user', content: 'What time is it?' },
  ];

  it('assembles a tool call streamed in pieces, then speaks from the tool result (local server)', async () => {
    const llm = openaiAt(local.url);
    const first = [];
    for await (const event of llm.chat(TIME, { tools: [TOOL] }, never())) first.push(event);
    const calls = first.filter((e) => e.type === 'tool-calls');
    expect(calls).toHaveLength(1);
    const [call] = calls[0]!.type === 'tool-calls' ? calls[0]!.calls : [];
    expect(call).toMatchObject({ name: 'get_local_time', arguments: '{}' });
    expect(call!.id).toMatch(/^call_/);
    expect(first.filter((e) => e.type === 'text')).toEqual([]);
    expect(first.at(-1)).toMatchObject({ type: 'usage', usage: { promptTokens: expect.any(Number) } });

    const followUp: ChatMessage[] = [
      ...TIME,
      { role: 'assistant', content: '', toolCalls: [call!] },
      { role: 'tool', toolCallId: call!.id, content: '{"time":"9:41 AM","timeZone":"UTC"}' },
    ];
    const text = (await collect(llm.chat(followUp, { tools: [TOOL] }, never()))).join('');
    expect(text).toContain('9:41 AM');
    // Without tools on offer, the same question is answered in words.
    expect((await collect(llm.chat(TIME, {}, never()))).join('')).not.toBe('');
  });

  /** Records request bodies; answers with a stream whose tool call arguments come in fragments, and usage. */
  async function recordingServer() {
    const bodies: Record<string, unknown>[] = [];
    const server = await startStubServer((req, res) => {
      let body = '';
      req.on('data', (part: Buffer) => (body += part.toString()));
      req.on('end', () => {
        bodies.push(JSON.parse(body) as Record<string, unknown>);
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        const base = { id: 'c1', object: 'chat.completion.chunk', created: 0, model: 'm' };
        const send = (choices: unknown[], extra: object = {}) =>
          res.write(`data: ${JSON.stringify({ ...base, choices, ...extra })}\n\n`);
        const delta = (d: object, finish: string | null = null) => [{ index: 0, delta: d, finish_reason: finish }];
        send(delta({ role: 'assistant', content: 'Checking. ' }));
        send(
          delta({
            tool_calls: [{ index: 0, id: 'call_a', type: 'function', function: { name: 'look', arguments: '' } }],
          }),
        );
        send(delta({ tool_calls: [{ index: 0, function: { arguments: '{"q":' } }] }));
        send(
          delta({
            tool_calls: [{ index: 1, id: 'call_b', type: 'function', function: { name: 'other', arguments: '{}' } }],
          }),
        );
        send(delta({ tool_calls: [{ index: 0, function: { arguments: '"tea"}' } }] }));
        send(delta({}, 'tool_calls'));
        send([], {
          usage: {
            prompt_tokens: 50,
            completion_tokens: 7,
            total_tokens: 57,
            prompt_tokens_details: { cached_tokens: 32 },
          },
        });
        res.end('data: [DONE]\n\n');
      });
    });
    return { ...server, bodies };
  }

  it('reads interleaved tool call fragments by index, usage with cached tokens, and sends tools in OpenAI form', async () => {
    const server = await recordingServer();
    try {
      const events = [];
      const llm = openaiAt(server.url, { promptCacheKey: true });
      for await (const e of llm.chat(TIME, { tools: [TOOL], promptCacheKey: 'deep:s1' }, never())) events.push(e);
      expect(events).toEqual([
        { type: 'text', text: 'Checking. ' },
        {
          type: 'tool-calls',
          calls: [
            { id: 'call_a', name: 'look', arguments: '{"q":"tea"}' },
            { id: 'call_b', name: 'other', arguments: '{}' },
          ],
        },
        { type: 'usage', usage: { promptTokens: 50, completionTokens: 7, cachedTokens: 32 } },
      ]);
      expect(server.bodies[0]).toMatchObject({
        stream: true,
        stream_options: { include_usage: true },
        prompt_cache_key: 'deep:s1',
        tools: [{ type: 'function', function: { name: 'get_local_time', parameters: TOOL.parameters } }],
      });
    } finally {
      await server.stop();
    }
  });

  it('asks for the model a request names (an agent’s own) instead of its own; a fallback chain of its first only', async () => {
    const server = await recordingServer();
    try {
      await collect(openaiAt(server.url).chat(TIME, { model: 'agents-own-model' }, never()));
      expect(server.bodies[0]).toMatchObject({ model: 'agents-own-model' });
    } finally {
      await server.stop();
    }
    const [first, second] = [new FakeLLM({ fail: {} }), new FakeLLM({ reply: 'ok' })];
    await collect(new FallbackLLM([first, second], { ttftTimeoutMs: 1_000 }).chat(TIME, { model: 'mine' }, never()));
    // The first (configured) provider was asked for the agent's model; it failed, and the fallback kept its own.
    expect([first.options[0]?.model, second.options[0]?.model]).toEqual(['mine', undefined]);
  });

  it('sends prompt_cache_key only where it is on (default: OpenAI itself), and tool messages in OpenAI form', async () => {
    const server = await recordingServer();
    try {
      const history: ChatMessage[] = [
        ...TIME,
        { role: 'assistant', content: '', toolCalls: [{ id: 'call_a', name: 'look', arguments: '{}' }] },
        { role: 'tool', toolCallId: 'call_a', content: '{"ok":true}' },
      ];
      await collect(openaiAt(server.url).chat(history, { promptCacheKey: 'deep:s1' }, never()));
      expect(server.bodies[0]).not.toHaveProperty('prompt_cache_key');
      expect(server.bodies[0]).not.toHaveProperty('tools');
      expect((server.bodies[0]!.messages as unknown[]).slice(2)).toEqual([
        {
          role: 'assistant',
          content: null,
          tool_calls: [{ id: 'call_a', type: 'function', function: { name: 'look', arguments: '{}' } }],
        },
        { role: 'tool', tool_call_id: 'call_a', content: '{"ok":true}' },
      ]);
      await collect(
        (await llmFromEnv({ LLM_BASE_URL: server.url, LLM_MODEL: 'm', LLM_PROMPT_CACHE_KEY: '1' })).chat(
          TIME,
          { promptCacheKey: 'k1' },
          never(),
        ),
      );
      expect(server.bodies[1]).toMatchObject({ prompt_cache_key: 'k1' });
    } finally {
      await server.stop();
    }
  });
});

describe('llmFromEnv and the registry', () => {
  it('names a provider preset: base URL, key variable and the fields that server takes', async () => {
    const groq = await llmFromEnv({
      LLM_PROVIDER: 'groq',
      GROQ_API_KEY: 'gsk_test',
      LLM_MODEL: 'llama-3.1-8b-instant',
    });
    expect(groq).toMatchObject({ provider: 'groq', baseURL: 'https://api.groq.com/openai/v1' });
    await expect(llmFromEnv({ LLM_PROVIDER: 'groq', LLM_MODEL: 'm' })).rejects.toThrow(/LLM_API_KEY or GROQ_API_KEY/);
    expect(await llmFromEnv({ LLM_PROVIDER: 'ollama', LLM_MODEL: 'llama3.2:1b' })).toMatchObject({
      provider: 'ollama',
      baseURL: 'http://127.0.0.1:11434/v1',
    });
    await expect(llmFromEnv({ LLM_PROVIDER: 'skynet', LLM_MODEL: 'm' })).rejects.toThrow(/LLM_PROVIDER/);
    // The key is never part of an error message.
    await expect(llmFromEnv({ LLM_PROVIDER: 'groq', GROQ_API_KEY: 'gsk_secret', LLM_MODEL: '' })).rejects.toThrow(
      expect.not.objectContaining({ message: expect.stringContaining('gsk_secret') }),
    );
  });

  it('builds a fallback chain from LLM_FALLBACK, and it serves from the next provider when the first fails', async () => {
    const llm = await llmFromEnv(
      {
        DEEP_LLM_BASE_URL: broken.url,
        DEEP_LLM_MODEL: 'primary',
        DEEP_LLM_MAX_RETRIES: '0',
        DEEP_LLM_FALLBACK: 'compatible:backup-model',
        COMPATIBLE_BASE_URL: local.url,
        DEEP_LLM_TTFT_TIMEOUT_MS: '800',
      },
      'DEEP_',
    );
    expect(llm).toBeInstanceOf(FallbackLLM);
    expect(llm.model).toBe('openai/primary > openai/backup-model');
    const events = [];
    for await (const e of llm.chat(ASK, {}, never())) events.push(e);
    expect(events[0]).toMatchObject({ type: 'served-by', model: 'backup-model', fallback: true });
    expect(events.filter((e) => e.type === 'text').length).toBeGreaterThan(0);
    await expect(llmFromEnv({ LLM_BASE_URL: local.url, LLM_MODEL: 'm', LLM_FALLBACK: 'nope:m' })).rejects.toThrow(
      /unknown provider nope/,
    );
  });

  it('surfaces HTTP failures as typed errors: 401 is auth (not retryable), 500 is server, no server is connection', async () => {
    const unauthorized = await startStubServer((_req, res) => {
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          error: {
            message: 'Incorrect API key provided: sk-abcdefghijklmnop',
            type: 'invalid_request_error',
            param: null,
            code: 'invalid_api_key',
          },
        }),
      );
    });
    try {
      const auth = await collect(openaiAt(unauthorized.url).chat(ASK, {}, never())).catch((e: unknown) => e);
      expect(auth).toBeInstanceOf(ProviderError);
      expect(auth).toMatchObject({ kind: 'auth', retryable: false, status: 401 });
      expect((auth as Error).message).not.toContain('sk-abcdefghijklmnop');
    } finally {
      await unauthorized.stop();
    }
    expect(await collect(openaiAt(broken.url).chat(ASK, {}, never())).catch((e: unknown) => e)).toMatchObject({
      kind: 'server',
      retryable: true,
    });
    expect(await collect(openaiAt(deadUrl).chat(ASK, {}, never())).catch((e: unknown) => e)).toMatchObject({
      kind: 'connection',
    });
  });

  it('builds from LLM_* with a not-needed key for local servers', async () => {
    const llm = await llmFromEnv({ LLM_BASE_URL: local.url, LLM_MODEL: 'tiny' });
    expect(llm).toMatchObject({ provider: 'openai', model: 'tiny', baseURL: local.url });
  });

  it('reads FAST_/DEEP_ prefixes, falling back to the unprefixed variable', async () => {
    const env = {
      LLM_BASE_URL: local.url,
      FAST_LLM_MODEL: 'small',
      DEEP_LLM_MODEL: 'large',
      DEEP_LLM_BASE_URL: 'http://deep:8000/v1',
    };
    expect(await llmFromEnv(env, 'FAST_')).toMatchObject({ model: 'small', baseURL: local.url });
    expect(await llmFromEnv(env, 'DEEP_')).toMatchObject({ model: 'large', baseURL: 'http://deep:8000/v1' });
  });

  it('names the missing or invalid variables in its error', async () => {
    await expect(llmFromEnv({ LLM_BASE_URL: local.url }, 'FAST_')).rejects.toThrow(/FAST_LLM_MODEL \(or LLM_MODEL\)/);
    await expect(llmFromEnv({ LLM_BASE_URL: 'not a url', LLM_MODEL: 'm' })).rejects.toThrow(/LLM_BASE_URL/);
    await expect(llmFromEnv({ LLM_MODEL: 'gpt-4o-mini' })).rejects.toThrow(/LLM_API_KEY/);
    await expect(llmFromEnv({ LLM_BASE_URL: local.url, LLM_MODEL: 'm', LLM_MAX_RETRIES: 'lots' })).rejects.toThrow(
      /LLM_MAX_RETRIES/,
    );
  });

  it('each preset is a registered llm provider (here "compatible"), and works end to end', async () => {
    const llm = await createProvider('llm', 'compatible', { LLM_BASE_URL: local.url, LLM_MODEL: 'local' });
    const text = (await collect(llm.chat(ASK, {}, never()))).join('');
    expect(text).toMatch(/mountain|Europe/);
  });
});

describe('FakeLLM', () => {
  it('replies with a function of the conversation and records the calls', async () => {
    const llm = new FakeLLM({ reply: (messages) => `echo: ${messages.at(-1)?.content ?? ''}` });
    expect((await collect(llm.chat(ASK, {}, never()))).join('')).toBe(`echo: ${ASK[1]!.content}`);
    expect(llm.calls).toEqual([ASK]);
    expect(llm.completed).toBe(1);
  });

  it('fails after the scripted number of tokens', async () => {
    const llm = new FakeLLM({ reply: 'one two three', fail: { afterTokens: 2, error: new Error('boom') } });
    const received: string[] = [];
    await expect(
      (async () => {
        for await (const delta of textOf(llm.chat(ASK, {}, never()))) received.push(delta);
      })(),
    ).rejects.toThrow('boom');
    expect(received).toEqual(['one', ' two']);
  });
});

describe('FallbackLLM', () => {
  const reply = (text: string, extra: ConstructorParameters<typeof FakeLLM>[0] = {}) =>
    new FakeLLM({ reply: text, model: text.split(' ')[0], ...extra });

  it('fails over on an error before the first token', async () => {
    const failing = reply('first answer', { fail: {} });
    const backup = reply('second answer');
    const events: FailoverEvent[] = [];
    const llm = new FallbackLLM([failing, backup], { ttftTimeoutMs: 1_000, onFailover: (e) => events.push(e) });
    expect((await collect(llm.chat(ASK, {}, never()))).join('')).toBe('second answer');
    expect(failing.calls).toHaveLength(1);
    expect(events).toMatchObject([{ provider: 'fake/first', reason: 'error' }]);
  });

  it('fails over when the first token is too slow, and aborts the slow one', async () => {
    const slow = reply('slow answer', { ttftMs: 30_000 });
    const fast = reply('fast answer');
    const events: FailoverEvent[] = [];
    const llm = new FallbackLLM([slow, fast], { ttftTimeoutMs: 50, onFailover: (e) => events.push(e) });
    expect((await collect(llm.chat(ASK, {}, never()))).join('')).toBe('fast answer');
    expect(events).toMatchObject([{ provider: 'fake/slow', reason: 'timeout' }]);
    await waitFor(() => slow.aborted === 1, { message: 'slow LLM aborted' });
  });

  it('aborts a slow HTTP provider: the server sees the disconnect', async () => {
    const slowServer = await startLocalLlmServer({ ttftMs: 30_000 });
    try {
      const llm = new FallbackLLM([openaiAt(slowServer.url), openaiAt(local.url)], { ttftTimeoutMs: 100 });
      const text = (await collect(llm.chat(ASK, {}, never()))).join('');
      expect(text).toMatch(/mountain|Europe/);
      await waitFor(() => slowServer.stats.disconnects === 1, { message: 'slow server saw the disconnect' });
    } finally {
      await slowServer.stop();
    }
  });

  it('does not switch after the first token: a later error propagates', async () => {
    const breaksMidAnswer = reply('partial answer then trouble', {
      fail: { afterTokens: 2, error: new Error('stream broke') },
    });
    const backup = reply('backup answer');
    const llm = new FallbackLLM([breaksMidAnswer, backup], { ttftTimeoutMs: 1_000 });
    const received: string[] = [];
    await expect(
      (async () => {
        for await (const delta of textOf(llm.chat(ASK, {}, never()))) received.push(delta);
      })(),
    ).rejects.toThrow('stream broke');
    expect(received).toEqual(['partial', ' answer']);
    expect(backup.calls).toHaveLength(0);
  });

  it('throws a ProviderError naming every failure (each kept in its cause) when all fail before the first token', async () => {
    const llm = new FallbackLLM([reply('a', { fail: { error: new Error('first down') } }), openaiAt(deadUrl)], {
      ttftTimeoutMs: 1_000,
    });
    const failure = collect(llm.chat(ASK, {}, never()));
    await expect(failure).rejects.toBeInstanceOf(ProviderError);
    await expect(failure).rejects.toThrow(/first down.*openai\/local/);
    const error = (await failure.catch((e: unknown) => e)) as ProviderError;
    expect(error.cause).toBeInstanceOf(AggregateError);
    expect((error.cause as AggregateError).errors).toHaveLength(2);
  });

  it('tells who served and who was given up on, and sets a failed provider aside until it has rested', async () => {
    let now = 0;
    const down = reply('never', { fail: { error: new Error('down') } });
    const backup = reply('backup answer');
    const llm = new FallbackLLM([down, backup], { ttftTimeoutMs: 1_000, unhealthyMs: 30_000 });
    // Health on a clock the test moves.
    Object.defineProperty(llm, 'health', { value: new ProviderHealth(2, 30_000, () => now) });
    const events = async () => {
      const out = [];
      for await (const e of llm.chat(ASK, {}, never())) out.push(e);
      return out;
    };
    const first = await events();
    expect(first[0]).toEqual({
      type: 'served-by',
      provider: 'fake',
      model: 'backup',
      fallback: true,
      failovers: [{ provider: 'fake/never', reason: 'error', message: 'down' }],
    });
    expect(down.calls).toHaveLength(1);
    // Set aside: the next turn goes straight to the backup (the skipped one is named, reason unhealthy).
    const second = await events();
    expect(down.calls).toHaveLength(1);
    expect(second[0]).toMatchObject({ fallback: true, failovers: [{ reason: 'unhealthy' }] });
    // Rested: tried first again.
    now += 30_001;
    await events();
    expect(down.calls).toHaveLength(2);
  });

  it('gives the last LLM no TTFT limit: a slow answer beats none', async () => {
    const onlySlowOne = reply('late but here', { ttftMs: 200 });
    const llm = new FallbackLLM([onlySlowOne], { ttftTimeoutMs: 20 });
    expect((await collect(llm.chat(ASK, {}, never()))).join('')).toBe('late but here');
  });

  it('stops without failing over when the caller aborts while waiting for the first token', async () => {
    const slow = reply('slow answer', { ttftMs: 30_000 });
    const backup = reply('backup answer');
    const llm: LLM = new FallbackLLM([slow, backup], { ttftTimeoutMs: 10_000 });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 20);
    expect(await collect(llm.chat(ASK, {}, controller.signal))).toEqual([]);
    expect(slow.aborted).toBe(1);
    expect(backup.calls).toHaveLength(0);
  });

  it('stops the committed LLM when its consumer stops reading', async () => {
    const chatty = reply('one two three four five six', { tokensPerSecond: 50 });
    const llm = new FallbackLLM([chatty], { ttftTimeoutMs: 1_000 });
    for await (const delta of textOf(llm.chat(ASK, {}, never()))) {
      expect(delta).toBe('one');
      break;
    }
    expect(chatty.completed).toBe(0);
    await waitFor(() => chatty.aborted === 1, { message: 'committed LLM aborted after break' });
  });
});
