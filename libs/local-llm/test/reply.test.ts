import { describe, expect, it } from 'vitest';
import { planReply } from '../src/reply.js';
import type { ChatCompletionRequest } from '../src/wire.js';

const ask = (content: string, extra: Partial<ChatCompletionRequest> = {}): ChatCompletionRequest => ({
  model: 'any-model',
  messages: [
    { role: 'system', content: 'You are a helpful voice assistant.' },
    { role: 'user', content },
  ],
  ...extra,
});

describe('planReply', () => {
  it('plans the whole text, counts usage, and echoes the model', () => {
    const reply = planReply(ask('What is the capital of France?'));
    expect(reply.finishReason).toBe('stop');
    expect(reply.toolCall).toBeUndefined();
    expect(reply.tokens.length).toBeGreaterThan(3);
    expect(reply.meta.model).toBe('any-model');
    expect(reply.meta.id).toMatch(/^chatcmpl-[0-9a-f]{32}$/);
    expect(reply.usage.completion_tokens).toBe(reply.tokens.length);
    expect(reply.usage.total_tokens).toBe(reply.usage.prompt_tokens + reply.tokens.length);
  });

  it('cuts the text at max tokens and says so', () => {
    const whole = planReply(ask('What is the capital of France?'));
    const cut = planReply(ask('What is the capital of France?', { max_completion_tokens: 2, max_tokens: 50 }));
    expect(cut.tokens).toEqual(whole.tokens.slice(0, 2));
    expect(cut.finishReason).toBe('length');
    expect(cut.usage.completion_tokens).toBe(2);
  });

  it('calls a tool whose description names the topic, with no text', () => {
    const reply = planReply(
      ask('What is the weather in Paris?', {
        tools: [{ type: 'function', function: { name: 'get_weather', description: 'Current weather for a city' } }],
      }),
    );
    expect(reply.finishReason).toBe('tool_calls');
    expect(reply.tokens).toEqual([]);
    expect(reply.toolCall).toMatchObject({ name: 'get_weather', arguments: '{}' });
    expect(reply.toolCall?.id).toMatch(/^call_[0-9a-f]{24}$/);
  });
});
