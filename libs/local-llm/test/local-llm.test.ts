import { request } from 'node:http';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  composeReply,
  roleFromSystemPrompt,
  startLocalLlmServer,
  wordTokens,
  type LocalLlmServer,
} from '@va/local-llm';
import { spawnNode, waitFor } from '@va/testkit';

const mainJs = fileURLToPath(new URL('../dist/main.js', import.meta.url));

// Prompts in the spirit of DESIGN §5, worded differently from the services' own so detection must be generic.
const OPENER_PROMPTS = [
  'You speak first in a live call. Your only job is a brief acknowledgement opener of 3 to 10 words while the ' +
    'answer is prepared. Do not answer the question.',
  'You produce one short filler phrase so the caller is not left in silence.',
];
const ANSWER_PROMPTS = [
  'A short acknowledgement opener is already being spoken right before your reply. Start with substance: ' +
    'never greet, never acknowledge again, never repeat the opener.',
  'You are a helpful voice assistant. Keep it brief and friendly.',
];
const QUESTIONS = [
  'What is the capital of France?',
  'How do I reset my password?',
  'Could you recommend a good Italian restaurant nearby?',
  'My laptop keeps overheating when I play games.',
  'Why do cats purr so loudly?',
];

const TEST_STOP_WORDS = new Set(
  'what does your with about could would tell that this have from when where which there like want know please should keeps'.split(
    ' ',
  ),
);
/** The question's content words, by the test's own simple rule (not the brain's). */
function contentWordsOf(text: string): string[] {
  return (text.toLowerCase().match(/[a-z']+/g) ?? []).filter((w) => w.length >= 4 && !TEST_STOP_WORDS.has(w));
}
const wordCount = (text: string) => text.trim().split(/\s+/).length;
const sentenceCount = (text: string) => (text.match(/[.!?](\s|$)/g) ?? []).length;
const GREETING_OR_ACK = /^(hi|hello|hey|sure|okay|ok|alright|right|good question|great question|let me|one moment)\b/i;

const conversation = (system: string, user: string) => [
  { role: 'system' as const, content: system },
  { role: 'user' as const, content: user },
];

describe('rule-based brain', () => {
  it('reads the role from the system prompt: opener requests vs. an opener already being spoken', () => {
    for (const prompt of OPENER_PROMPTS) expect(roleFromSystemPrompt(prompt), prompt).toBe('opener');
    for (const prompt of ANSWER_PROMPTS) expect(roleFromSystemPrompt(prompt), prompt).toBe('answer');
  });

  it('opener: 3–10 words that acknowledge without answering, varied across questions', () => {
    const openers = new Set<string>();
    for (const question of QUESTIONS) {
      for (const system of OPENER_PROMPTS) {
        const reply = composeReply(conversation(system, question));
        openers.add(reply);
        expect(wordCount(reply), reply).toBeGreaterThanOrEqual(3);
        expect(wordCount(reply), reply).toBeLessThanOrEqual(10);
        expect(reply, 'an opener asks nothing').not.toContain('?');
        expect(reply).not.toMatch(/^You (asked|said)/);
        // It may echo the topic noun, but no more of the question than that.
        const echoed = contentWordsOf(question).filter((w) => reply.toLowerCase().includes(w));
        expect(echoed.length, `${reply} echoes ${echoed.join(', ')}`).toBeLessThanOrEqual(1);
        // And none of what the answer role would say.
        const answer = composeReply(conversation(ANSWER_PROMPTS[0]!, question));
        expect(answer).not.toContain(reply.replace(/\.$/, ''));
      }
    }
    expect(openers.size).toBeGreaterThanOrEqual(3);
  });

  it('answer: 2–3 sentences on the question’s words, substance first, ending with a follow-up question', () => {
    for (const question of QUESTIONS) {
      for (const system of ANSWER_PROMPTS) {
        const reply = composeReply(conversation(system, question));
        const mentioned = contentWordsOf(question).filter((w) => reply.toLowerCase().includes(w));
        expect(mentioned.length, `${reply} mentions nothing of "${question}"`).toBeGreaterThan(0);
        expect(reply.endsWith('?'), reply).toBe(true);
        expect(sentenceCount(reply), reply).toBeGreaterThanOrEqual(2);
        expect(sentenceCount(reply), reply).toBeLessThanOrEqual(3);
        expect(reply, 'no greeting or second acknowledgement').not.toMatch(GREETING_OR_ACK);
      }
    }
  });

  it('uses the last user message of a longer conversation', () => {
    const reply = composeReply([
      { role: 'system', content: ANSWER_PROMPTS[0]! },
      { role: 'user', content: 'Tell me about volcanoes.' },
      { role: 'assistant', content: 'Volcanoes are openings in the crust.' },
      { role: 'user', content: 'What about glaciers?' },
    ]);
    expect(reply).toContain('glaciers');
    expect(reply).not.toContain('volcanoes');
  });

  it('summary: asked to summarize, it names the topics the user asked about, short, and keeps older ones', () => {
    // Worded like session-context's prompt but not copied: detection must be generic.
    const system = 'Summarize the following conversation in one short paragraph for the assistant.';
    expect(roleFromSystemPrompt(system)).toBe('summary');
    expect(roleFromSystemPrompt('Never summarize; answer the question directly.')).toBe('answer');
    const transcript = [
      'Summary so far: (none)',
      '',
      'New messages:',
      'User: What is the weather in Paris?',
      'Assistant: It is sunny there.',
      'User: How do I reset my password?',
      'Assistant: Open the settings page.',
      'User: Could you recommend a good Italian restaurant nearby?',
    ].join('\n');
    const first = composeReply(conversation(system, transcript));
    expect(first).toMatch(/^The user asked about /);
    for (const topic of ['Paris', 'password', 'restaurant']) expect(first).toContain(topic);
    expect(first, 'assistant lines are not topics').not.toContain('settings');
    expect(wordCount(first)).toBeLessThanOrEqual(30);
    expect(first, 'not the answer role').not.toContain('?');

    // Folding again: the earlier summary's topics stay, the new ones join them.
    const again = composeReply(
      conversation(system, `Summary so far: ${first}\n\nNew messages:\nUser: What is the capital of France?`),
    );
    for (const topic of ['Paris', 'password', 'restaurant', 'France']) expect(again).toContain(topic);

    // Plain chat messages (no transcript) work too; a responder's "Earlier: … summary" never flips its role.
    const chat = composeReply([
      { role: 'system', content: system },
      { role: 'user', content: 'Tell me about volcanoes.' },
      { role: 'assistant', content: 'They are openings in the crust.' },
      { role: 'user', content: 'What about glaciers?' },
    ]);
    expect(chat).toContain('volcanoes');
    expect(chat).toContain('glaciers');
    const answer = composeReply([
      { role: 'system', content: ANSWER_PROMPTS[0]! },
      { role: 'system', content: 'Earlier: the user asked for a summary of the news.' },
      { role: 'user', content: 'What about glaciers?' },
    ]);
    expect(answer).not.toMatch(/^The user asked about/);
    expect(answer).toContain('glaciers');
  });
});

describe('local OpenAI-compatible server', () => {
  let server: LocalLlmServer;
  let client: OpenAI;

  beforeAll(async () => {
    server = await startLocalLlmServer({ ttftMs: 10, tokensPerSecond: 200 });
    client = new OpenAI({ baseURL: server.url, apiKey: 'not-needed', maxRetries: 0 });
  });
  afterAll(async () => {
    await server?.stop();
  });

  const question = conversation(ANSWER_PROMPTS[0]!, 'How do I reset my password?');
  const post = (body: string) =>
    fetch(`${server.url}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });

  it('listens on 127.0.0.1 with a base URL ending in /v1', () => {
    expect(server.url).toBe(`http://127.0.0.1:${server.port}/v1`);
  });

  it('streams chat.completion.chunk events that the openai SDK parses', async () => {
    const stream = await client.chat.completions.create({ model: 'any-model', messages: question, stream: true });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);

    expect(chunks.length).toBeGreaterThanOrEqual(3);
    const first = chunks[0]!;
    expect(first.id).toMatch(/^chatcmpl-/);
    for (const c of chunks) {
      expect(c).toMatchObject({
        id: first.id,
        object: 'chat.completion.chunk',
        created: first.created,
        model: 'any-model',
      });
      expect(c.choices).toHaveLength(1);
      expect(c.choices[0]!.index).toBe(0);
    }
    expect(first.choices[0]!.delta.role).toBe('assistant');
    const last = chunks.at(-1)!;
    expect(last.choices[0]).toMatchObject({ delta: {}, finish_reason: 'stop' });
    expect(chunks.slice(0, -1).every((c) => c.choices[0]!.finish_reason === null)).toBe(true);

    const text = chunks.map((c) => c.choices[0]!.delta.content ?? '').join('');
    expect(text).toBe(composeReply(question));
  });

  it('frames SSE as `data: {json}` events and ends with `data: [DONE]`', async () => {
    const response = await post(JSON.stringify({ model: 'm', messages: question, stream: true }));
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/event-stream');
    const events = (await response.text()).split('\n\n').filter((e) => e !== '');
    expect(events.at(-1)).toBe('data: [DONE]');
    for (const event of events.slice(0, -1)) {
      expect(event.startsWith('data: ')).toBe(true);
      expect(JSON.parse(event.slice('data: '.length))).toHaveProperty('object', 'chat.completion.chunk');
    }
  });

  it('sends usage in a last chunk without choices when stream_options.include_usage is set', async () => {
    const stream = await client.chat.completions.create({
      model: 'm',
      messages: question,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage?.completion_tokens).toBe(wordTokens(composeReply(question)).length);
  });

  it('answers stream: false with a chat.completion', async () => {
    const reply = await client.chat.completions.create({ model: 'm', messages: question });
    expect(reply.object).toBe('chat.completion');
    expect(reply.id).toMatch(/^chatcmpl-/);
    expect(reply.choices[0]).toMatchObject({
      index: 0,
      message: { role: 'assistant', content: composeReply(question) },
      finish_reason: 'stop',
    });
    expect(reply.usage?.completion_tokens).toBe(wordTokens(composeReply(question)).length);
  });

  it('stops at max_tokens with finish_reason "length"', async () => {
    const reply = await client.chat.completions.create({ model: 'm', messages: question, max_tokens: 3 });
    expect(wordTokens(reply.choices[0]!.message.content ?? '')).toHaveLength(3);
    expect(reply.choices[0]!.finish_reason).toBe('length');
  });

  it('plays the opener or the answer role from the system prompt', async () => {
    const ask = async (system: string) =>
      (
        await client.chat.completions.create({
          model: 'm',
          messages: conversation(system, 'What is the capital of France?'),
        })
      ).choices[0]!.message.content ?? '';
    const opener = await ask(OPENER_PROMPTS[0]!);
    const answer = await ask(ANSWER_PROMPTS[0]!);
    expect(wordCount(opener)).toBeLessThanOrEqual(10);
    expect(opener).not.toContain('?');
    expect(answer).toMatch(/France/);
    expect(answer.endsWith('?')).toBe(true);
  });

  it('rejects bad JSON with a 400 OpenAI-style error', async () => {
    const response = await post('{"model": "m", "messages": [');
    expect(response.status).toBe(400);
    const body = (await response.json()) as { error: { message: string; type: string } };
    expect(body.error.type).toBe('invalid_request_error');
    expect(body.error.message).toMatch(/JSON/);
  });

  it('rejects a request that fails the schema with a 400 naming the field', async () => {
    const response = await post(JSON.stringify({ model: 'm', stream: true }));
    expect(response.status).toBe(400);
    const body = (await response.json()) as { error: { type: string; param: string | null } };
    expect(body.error).toMatchObject({ type: 'invalid_request_error', param: 'messages' });

    // The SDK sees the same as an API error with status 400.
    const badRole = client.chat.completions.create({
      model: 'm',
      messages: [{ role: 'narrator', content: 'hi' }] as never,
    });
    await expect(badRole).rejects.toMatchObject({ status: 400 });
  });

  it('lists its model on GET /v1/models and answers 404 elsewhere', async () => {
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toHaveLength(1);
    expect((await fetch(`${server.url}/nothing-here`)).status).toBe(404);
  });

  it('stops generating when the client disconnects mid-stream', async () => {
    // Slow enough that the whole reply would take well over the wait below.
    const slow = await startLocalLlmServer({ ttftMs: 0, tokensPerSecond: 20 });
    try {
      const fullTokens = wordTokens(composeReply(question)).length;
      expect(fullTokens).toBeGreaterThan(10);
      await new Promise<void>((resolve, reject) => {
        const body = JSON.stringify({ model: 'm', messages: question, stream: true });
        const req = request(`${slow.url}/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
        });
        req.on('response', (res) => {
          res.once('data', () => {
            req.destroy(); // hang up after the first event
            resolve();
          });
        });
        req.on('error', (err) => (req.destroyed ? undefined : reject(err)));
        req.end(body);
      });
      await waitFor(() => slow.stats.disconnects === 1, { message: 'server noticed the disconnect' });
      // Give the reply the time it would have needed in full: it must not have been completed.
      await new Promise((resolve) => setTimeout(resolve, (fullTokens / 20) * 1000 + 200));
      expect(slow.stats.completions).toBe(0);
    } finally {
      await slow.stop();
    }
  });
});

describe('va-local-llm CLI', () => {
  it('prints a listening line, serves, and exits 0 on SIGTERM', async () => {
    const child = spawnNode(mainJs, { args: ['--port', '0', '--ttft-ms', '0', '--tps', '500'] });
    try {
      const line = await child.waitForJson<{ event: string; url: string }>((m) => m.event === 'listening');
      expect(line.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v1$/);
      const models = await fetch(`${line.url}/models`);
      expect(models.status).toBe(200);
    } finally {
      const exit = await child.stop();
      expect(exit.code).toBe(0);
    }
  });

  it('takes its settings from env too, and exits 2 with a usage line on a bad value', async () => {
    const child = spawnNode(mainJs, { env: { LOCAL_LLM_TPS: 'fast' } });
    const exit = await child.exited;
    expect(exit.code).toBe(2);
    expect(child.stderr.join('\n')).toMatch(/usage: va-local-llm/);
  });
});
