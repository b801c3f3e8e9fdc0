/**
 * A small rule-based stand-in for a language model. It knows nothing: it reads the system prompt to tell which
 * role it plays (a brief opener, the answer, or a summary of the conversation) and builds its reply from the
 * words of the last user message (or, summarizing, of every user line).
 * That is enough to exercise the whole voice pipeline offline; real answers need a real LLM.
 */

import {
  isContentWord,
  isQuestion,
  keyPhrase,
  normalizeWord,
  phrase,
  questionTopic,
  splitWords,
  swapPerson,
} from './words.js';

export { wordTokens } from './words.js';

export interface BrainMessage {
  role: string;
  content: string;
}

/** A tool the request offers: the brain calls one whose description names what the user asks about. */
export interface BrainTool {
  name: string;
  description: string;
}

/** What the brain does next: speak, or call a tool first. */
export type BrainDecision = { kind: 'text'; text: string } | { kind: 'tool'; name: string; arguments: string };

export type BrainRole = 'opener' | 'answer' | 'summary';

/** Words that say "produce an acknowledgement / opener / filler". */
const OPENER_CUE = /\b(acknowledg\w*|opener|filler)\b/i;
/** Preceding a cue within a few words, these turn it around ("never repeat the opener"). */
const NEGATION = /\b(never|not|no|don't|dont|without|avoid)\b/i;
/** In the same sentence as a cue, these say the opener exists already ("an opener is already being spoken"). */
const ALREADY_SPOKEN = /\b(already|being|been|was|were)\b/i;

/** Words that say "summarize this conversation". */
const SUMMARY_CUE = /\bsummar(y|ies|ize|ise|ized|ised|izing|ising)\b/i;

/** True when some sentence asks for the cue, and the few words before it do not negate it. */
function asksFor(systemPrompt: string, cueOf: RegExp, unless?: RegExp): boolean {
  const sentences = systemPrompt.split(/(?<=[.!?;:\n])\s+/);
  return sentences.some((sentence) => {
    const cue = cueOf.exec(sentence);
    if (!cue) return false;
    const before = sentence.slice(0, cue.index).split(/\s+/).slice(-4).join(' ');
    return !NEGATION.test(before) && !unless?.test(sentence);
  });
}

/**
 * 'summary' when the system prompt asks to summarize; 'opener' when some sentence of it asks for an
 * acknowledgement / opener / filler, and that sentence neither negates it nor says one is already being spoken
 * (the answer role's prompt says exactly that); 'answer' otherwise.
 */
export function roleFromSystemPrompt(systemPrompt: string): BrainRole {
  if (asksFor(systemPrompt, SUMMARY_CUE)) return 'summary';
  return asksFor(systemPrompt, OPENER_CUE, ALREADY_SPOKEN) ? 'opener' : 'answer';
}

/** The reply to a conversation: the role comes from the system messages, the content from the last user message. */
export function composeReply(messages: readonly BrainMessage[]): string {
  const systems = messages.filter((m) => m.role === 'system' || m.role === 'developer').map((m) => m.content);
  // Only the first system message sets the task: a later one may quote the conversation (a responder's
  // "Earlier: …" summary) and must not turn an answer into a summary.
  if (systems.length > 0 && roleFromSystemPrompt(systems[0]!) === 'summary') return summarize(messages);
  const lastUser = [...messages].reverse().find((m) => m.role === 'user')?.content ?? '';
  const role = roleFromSystemPrompt(systems.join('\n'));
  return role === 'opener' ? opener(lastUser) : answer(lastUser);
}

/** How many topics a summary keeps (the most recent): it goes into every later prompt. */
const SUMMARY_TOPICS = 6;

/**
 * An extractive summary: "The user asked about X, Y and Z; the assistant answered." The topics are the key
 * phrases of the user's lines — `User: …` lines of a transcript, or the user messages — after those of the
 * summary so far (`Summary so far: …`, when it is one of ours), so folding again keeps the older topics.
 */
function summarize(messages: readonly BrainMessage[]): string {
  const text = messages
    .filter((m) => m.role === 'user')
    .map((m) => m.content)
    .join('\n');
  const lines = text.split('\n').map((l) => l.trim());
  const transcript = lines.filter((l) => /^user:/i.test(l)).map((l) => l.slice(5).trim());
  const said = transcript.length > 0 ? transcript : messages.filter((m) => m.role === 'user').map((m) => m.content);
  const earlier = /^summary so far:.*?asked about (.+?);/im.exec(text)?.[1]?.split(/, | and /) ?? [];
  const fresh = said.flatMap((line) => keyPhrase(swapPerson(splitWords(line))) ?? []);
  const topics = [...new Set([...earlier, ...fresh].map((t) => t.trim()).filter(Boolean))].slice(-SUMMARY_TOPICS);
  const looked = /^(assistant called|tool result)/im.test(text) ? ' and looked things up' : '';
  if (topics.length === 0) return 'The user and the assistant talked briefly; nothing specific was asked yet.';
  const list = topics.length === 1 ? topics[0]! : `${topics.slice(0, -1).join(', ')} and ${topics.at(-1)!}`;
  return `The user asked about ${list}; the assistant answered${looked}.`;
}

/**
 * Like a model offered tools: after the user's question, a tool whose description shares a topic word with a
 * question is called; after the tool results, the reply is built from them (an apology for a failed tool).
 */
export function decide(messages: readonly BrainMessage[], tools: readonly BrainTool[] = []): BrainDecision {
  const lastUserAt = messages.findLastIndex((m) => m.role === 'user');
  const results = messages.slice(lastUserAt + 1).filter((m) => m.role === 'tool');
  if (results.length > 0) return { kind: 'text', text: results.map((r) => speakToolResult(r.content)).join(' ') };
  const question = messages[lastUserAt]?.content ?? '';
  if (tools.length > 0 && isQuestion(question)) {
    const topics = new Set(splitWords(question).filter(isContentWord).map(normalizeWord));
    const tool = tools.find((t) => splitWords(t.description).some((w) => topics.has(normalizeWord(w))));
    if (tool) return { kind: 'tool', name: tool.name, arguments: '{}' };
  }
  return { kind: 'text', text: composeReply(messages) };
}

/** A tool's JSON result said aloud: its fields as "key value" pairs, or an apology for an error. */
function speakToolResult(content: string): string {
  let result: unknown;
  try {
    result = JSON.parse(content);
  } catch {
    return content;
  }
  if (result !== null && typeof result === 'object' && 'error' in result) {
    return 'Sorry, I could not look that up right now. Please try again in a moment.';
  }
  if (result === null || typeof result !== 'object') return String(result);
  const fields = Object.entries(result).map(
    ([key, value]) => `${key.replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase()} ${String(value)}`,
  );
  return `Here is what I found: ${fields.join(', ')}.`;
}

const OPENERS = [
  'Good question, let me think.',
  'Sure, give me a second.',
  'Let me check that for you.',
  'Okay, one moment please.',
  'Right, let me look into that.',
  'Alright, let me see.',
];

/** 3–10 words that buy time without answering; varied by the user's words so it does not sound canned. */
function opener(userText: string): string {
  const hash = fnv1a(userText.toLowerCase());
  const topic = keyPhrase(swapPerson(splitWords(userText)));
  // Now and then echo the topic noun, which sounds attentive and still answers nothing.
  if (topic && (hash >>> 4) % 4 === 0) return `Let me think about ${topic}.`;
  return OPENERS[hash % OPENERS.length]!;
}

const INSIGHTS = [
  'The answer about {key} depends on a few details, so it helps to be specific.',
  'There are a few ways to look at {key}, and the right one depends on your situation.',
  'With {key}, the details usually decide what makes the most sense.',
  'A good way into {key} is to start with the part that affects you most.',
];

const FOLLOW_UPS = [
  'What would you like to know first about {key}?',
  'Which part of {key} matters most to you?',
  'Is there a specific detail about {key} I should focus on?',
  'Would you like a quick overview of {key} or the full details?',
];

/**
 * Three sentences, substance first (no greeting, no acknowledgement: an opener may already be playing):
 * what was heard, one generic sentence built from the user's words, and a follow-up question.
 */
function answer(userText: string): string {
  const words = splitWords(userText);
  const key = keyPhrase(swapPerson(words));
  if (!key) return 'I did not catch a question there. Could you say it again?';
  const hash = fnv1a(userText.toLowerCase());
  const heard = isQuestion(userText)
    ? `You asked ${questionTopic(words)}.`
    : `You said ${phrase(swapPerson(words), 12)}.`;
  const insight = INSIGHTS[hash % INSIGHTS.length]!.replace('{key}', key);
  const followUp = FOLLOW_UPS[(hash >>> 8) % FOLLOW_UPS.length]!.replace('{key}', key);
  return `${heard} ${insight} ${followUp}`;
}

/** FNV-1a: a stable, cheap hash so the same words always pick the same phrasing. */
function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}
