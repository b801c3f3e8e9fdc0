import { z } from 'zod';

/**
 * The slice of the OpenAI chat-completions wire format this server speaks. Unknown request fields are accepted
 * and ignored (clients send many, e.g. `user`, `seed`), as OpenAI-compatible servers usually do.
 */

const ContentPart = z.looseObject({ type: z.string(), text: z.string().optional() });

export const ChatCompletionRequest = z.looseObject({
  model: z.string().min(1),
  messages: z
    .array(
      z.looseObject({
        role: z.enum(['system', 'developer', 'user', 'assistant', 'tool']),
        content: z.union([z.string(), z.array(ContentPart), z.null()]).optional(),
        tool_call_id: z.string().optional(),
      }),
    )
    .min(1),
  tools: z
    .array(
      z.looseObject({
        type: z.literal('function'),
        function: z.looseObject({ name: z.string().min(1), description: z.string().optional() }),
      }),
    )
    .nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.looseObject({ include_usage: z.boolean().optional() }).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  max_tokens: z.number().int().positive().nullish(),
  max_completion_tokens: z.number().int().positive().nullish(),
  n: z.literal(1).nullish(),
});
export type ChatCompletionRequest = z.infer<typeof ChatCompletionRequest>;

/** Message content as plain text: text parts joined, other parts (images, audio) ignored. */
export function contentText(content: ChatCompletionRequest['messages'][number]['content']): string {
  if (typeof content === 'string') return content;
  return (content ?? []).map((part) => part.text ?? '').join('');
}

export type FinishReason = 'stop' | 'length' | 'tool_calls';

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** One piece of a streamed tool call: the first carries id and name, later ones argument fragments. */
export interface ToolCallDelta {
  index: number;
  id?: string;
  type?: 'function';
  function: { name?: string; arguments: string };
}

export interface ReplyMeta {
  id: string;
  created: number;
  model: string;
}

export function chunk(
  meta: ReplyMeta,
  delta: { role?: 'assistant'; content?: string; tool_calls?: ToolCallDelta[] },
  finishReason: FinishReason | null,
) {
  return {
    ...meta,
    object: 'chat.completion.chunk',
    system_fingerprint: null,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
  };
}

/** With `stream_options.include_usage`, OpenAI sends usage last, in a chunk with no choices. */
export function usageChunk(meta: ReplyMeta, usage: Usage) {
  return { ...meta, object: 'chat.completion.chunk', system_fingerprint: null, choices: [], usage };
}

export function completion(
  meta: ReplyMeta,
  content: string,
  finishReason: FinishReason,
  usage: Usage,
  toolCall?: { id: string; name: string; arguments: string },
) {
  return {
    ...meta,
    object: 'chat.completion',
    system_fingerprint: null,
    choices: [
      {
        index: 0,
        message: toolCall
          ? {
              role: 'assistant',
              content: null,
              refusal: null,
              tool_calls: [
                { id: toolCall.id, type: 'function', function: { name: toolCall.name, arguments: toolCall.arguments } },
              ],
            }
          : { role: 'assistant', content, refusal: null },
        logprobs: null,
        finish_reason: finishReason,
      },
    ],
    usage,
  };
}

/** OpenAI's error body: `{ error: { message, type, param, code } }`. */
export function errorBody(message: string, type: string, param: string | null = null, code: string | null = null) {
  return { error: { message, type, param, code } };
}
