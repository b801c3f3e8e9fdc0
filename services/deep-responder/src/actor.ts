import { AgentStore } from '@va/agents';
import type { Bus } from '@va/bus';
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

/** Agent profiles, read when the model hands the conversation over (one read-only store per connection). */
const stores = new WeakMap<Bus, AgentStore>();
const handoff: NonNullable<ResponderOptions['handoff']> = {
  load: (ctx, name) => {
    let store = stores.get(ctx.bus);
    if (!store) stores.set(ctx.bus, (store = new AgentStore(ctx.bus)));
    return store.get(name);
  },
};

export function deepResponder(llm: LLM, tools?: ToolRegistry, mcp?: ResponderOptions['mcp']) {
  return createResponderActor({
    stage: STAGE,
    source: 'deep',
    llm,
    systemPrompt: ANSWER_PROMPT,
    handoff,
    ...DEEP_DEFAULTS,
    ...(tools ? { tools } : {}),
    ...(mcp ? { mcp } : {}),
  });
}
