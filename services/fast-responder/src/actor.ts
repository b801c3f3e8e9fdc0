import type { LLM } from '@va/providers';
import { createResponderActor, OPENER_PROMPT, type ResponderOptions } from '@va/responder';

export const STAGE = 'fast-responder';

/** A brief opener: little history, low temperature, a handful of tokens, and no waiting for history. */
export const FAST_DEFAULTS = {
  historyTokens: 200,
  llmOptions: { temperature: 0.3, maxTokens: 24 },
} satisfies Partial<ResponderOptions>;

export function fastResponder(llm: LLM) {
  return createResponderActor({ stage: STAGE, source: 'fast', llm, systemPrompt: OPENER_PROMPT, ...FAST_DEFAULTS });
}
