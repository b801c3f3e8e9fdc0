import type { LLM } from '@va/providers';
import {
  ANSWER_PROMPT,
  createResponderActor,
  PROVIDER_APOLOGY,
  type ResponderOptions,
  type ToolRegistry,
} from '@va/responder';

export const STAGE = 'deep-responder';

/** The real answer: the full history budget, told an opener is already playing. */
export const DEEP_DEFAULTS = {
  historyTokens: 3000,
  llmOptions: { temperature: 0.7, maxTokens: 300 },
  maxToolRounds: 3,
  apologyOnFailure: PROVIDER_APOLOGY,
} satisfies Partial<ResponderOptions>;

export function deepResponder(llm: LLM, tools?: ToolRegistry, mcp?: ResponderOptions['mcp']) {
  return createResponderActor({
    stage: STAGE,
    source: 'deep',
    llm,
    systemPrompt: ANSWER_PROMPT,
    ...DEEP_DEFAULTS,
    ...(tools ? { tools } : {}),
    ...(mcp ? { mcp } : {}),
  });
}
