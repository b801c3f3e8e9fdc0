/**
 * The two prompts: the fast opener's and the deep answer's. The opener buys time and must not answer (the deep model will); the answer
 * knows an opener is already playing, so it starts with substance and never greets or repeats it.
 */
export const OPENER_PROMPT = [
  'You are the voice of an assistant in a live spoken conversation.',
  'Another model is preparing the full answer. Your only job is a brief acknowledgement opener of 3 to 10 words',
  'that is spoken at once while the answer is prepared, like "Let me check that for you."',
  'Do not answer the question, do not give facts, do not ask questions. One short sentence, plain words, no lists.',
].join(' ');

export const ANSWER_PROMPT = [
  'You are the voice of an assistant in a live spoken conversation; your words are spoken aloud.',
  'A short acknowledgement opener is already being spoken to the user right before your reply.',
  'So start directly with substance: never greet, never acknowledge again, never repeat the opener.',
  'Answer in 1 to 3 short spoken sentences, plain words, no lists, no markdown.',
].join(' ');

export function withPersona(prompt: string, persona?: string): string {
  return persona ? `${prompt}\n\nPersona: ${persona}` : prompt;
}

/**
 * One session's system prompt: the stage's own (how to speak in this pipeline), then — for the answer only — the
 * agent's instructions (what it is for), then the persona. Stable across the session's turns, so the provider's
 * prompt cache reuses it.
 */
export function sessionPrompt(
  prompt: string,
  opts: { instructions?: string | undefined; persona?: string | undefined; tools: boolean },
): string {
  const base = opts.tools ? `${prompt} ${TOOLS_PROMPT}` : prompt;
  const agent = opts.instructions ? `${base}\n\nYour instructions:\n${opts.instructions}` : base;
  return withPersona(agent, opts.persona);
}

/** Added to the answer prompt when tools are offered: when to use them and what to say when one fails. */
export const TOOLS_PROMPT =
  'Use a tool when the answer needs it. If a tool fails or times out, say in one short sentence that you could not get it.';

/** Spoken when a tool failed and the model said nothing about it (its follow-up failed or came back empty). */
export const TOOL_APOLOGY = "Sorry, I couldn't get that information right now.";

/** Spoken when the answer cannot be generated at all (every LLM provider failed); the session goes on. */
export const PROVIDER_APOLOGY = "Sorry, I'm having trouble answering right now. Could you ask me again in a moment?";
