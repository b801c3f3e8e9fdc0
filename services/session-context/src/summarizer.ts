import type { ChatMessage } from '@va/protocol';
import { llmFromEnv, textOf, type LLM } from '@va/providers';
import type { Logger } from '@va/telemetry';
import { clip, type HistoryEntry } from '@va/context';
import type { ContextOptions } from './options.js';

/** What one summarize run folds: the summary so far and the messages leaving the window. */
export interface SummaryInput {
  previous: string | null;
  entries: readonly HistoryEntry[];
}

export interface Summarizer {
  /** For spans: the model's provider, or 'extractive'. */
  readonly provider: string;
  readonly model: string;
  /** The new summary (old summary + entries). Throws on failure or abort. */
  summarize(input: SummaryInput, signal: AbortSignal): Promise<string>;
}

/** The one summary prompt. Short: the summary goes into every later prompt, so it must stay short too. */
export const SUMMARY_PROMPT =
  'Summarize this voice conversation for the assistant that continues it. Merge the summary so far with the ' +
  'new messages into one short paragraph of plain text: what the user wants, facts and tool results learned, ' +
  'what was agreed, what is still open. No preamble, no lists, under 120 words.';

/** A transcript line is cut to this many characters: the prompt stays bounded whatever was said. */
const LINE_CHARS = 600;

/** The user message of a summarize request: the summary so far, then the new messages as a transcript. */
export function transcriptOf(input: SummaryInput): string {
  const lines = input.entries.map((e) => {
    if (e.role === 'tool') return `Tool result (${e.name}${e.ok ? '' : ', failed'}): ${clip(e.content, LINE_CHARS)}`;
    if (e.role === 'assistant' && e.toolCalls) {
      return `Assistant called ${e.toolCalls.map((c) => `${c.name}(${clip(c.arguments, 120)})`).join(', ')}`;
    }
    const who = e.role === 'user' ? 'User' : 'Assistant';
    const cut = e.role === 'assistant' && e.interrupted ? ' [interrupted]' : '';
    return `${who}: ${clip(e.content, LINE_CHARS)}${cut}`;
  });
  return `Summary so far: ${input.previous ?? '(none)'}\n\nNew messages:\n${lines.join('\n')}`;
}

/** Summaries by a chat model (any OpenAI-compatible server, or a fake in tests). */
export function llmSummarizer(
  llm: LLM,
  opts: Pick<ContextOptions, 'summaryMaxChars' | 'summaryMaxTokens'>,
): Summarizer {
  return {
    provider: llm.provider,
    model: llm.model,
    async summarize(input, signal) {
      const messages: ChatMessage[] = [
        { role: 'system', content: SUMMARY_PROMPT },
        { role: 'user', content: transcriptOf(input) },
      ];
      let text = '';
      for await (const delta of textOf(
        llm.chat(messages, { temperature: 0.2, maxTokens: opts.summaryMaxTokens }, signal),
      ))
        text += delta;
      // An LLM stream ends quietly on abort: half a summary must not replace the old one.
      signal.throwIfAborted();
      const summary = text.replace(/\s+/g, ' ').trim();
      if (summary === '') throw new Error('the model returned an empty summary');
      return clip(summary, opts.summaryMaxChars);
    },
  };
}

/** First words of a message, enough to recall what it was about. */
function gist(text: string, maxWords = 12): string {
  const words = text.trim().split(/\s+/).filter(Boolean);
  const head = words
    .slice(0, maxWords)
    .join(' ')
    .replace(/[.!?,;:]+$/, '');
  return words.length > maxWords ? `${head}…` : head;
}

/**
 * Without a model: the user's messages, shortened, appended to the summary so far; the oldest part is dropped
 * when it grows past the limit. Crude, but the later turns still know what was asked.
 */
export function extractiveSummarizer(opts: Pick<ContextOptions, 'summaryMaxChars'>): Summarizer {
  return {
    provider: 'extractive',
    model: 'extractive',
    summarize(input) {
      const said = input.entries.flatMap((e) => (e.role === 'user' && e.content.trim() ? [gist(e.content)] : []));
      const looked = [...new Set(input.entries.flatMap((e) => (e.role === 'tool' ? [e.name] : [])))];
      const parts = [
        ...(said.length > 0 ? [`The user said: ${said.join('; ')}.`] : []),
        ...(looked.length > 0 ? [`The assistant looked up ${looked.join(', ')}.`] : []),
      ];
      const text = [input.previous ?? '', ...parts].join(' ').trim();
      if (text.length <= opts.summaryMaxChars) return Promise.resolve(text);
      // Keep the most recent part, starting at a word.
      const tail = text.slice(text.length - opts.summaryMaxChars + 1);
      return Promise.resolve(`…${tail.slice(tail.indexOf(' ') + 1)}`);
    },
  };
}

/**
 * The summarizer the service runs: the model of `SUMMARY_LLM_*` (falling back to `LLM_*`), or the extractive
 * one when none is configured — session-context must run without a model, so this never throws.
 */
export async function summarizerFromEnv(
  env: NodeJS.ProcessEnv,
  opts: ContextOptions,
  log: Logger,
): Promise<Summarizer> {
  try {
    const llm = await llmFromEnv(env, 'SUMMARY_');
    log.info({ provider: llm.provider, model: llm.model }, 'summaries by the configured model');
    return llmSummarizer(llm, opts);
  } catch (err) {
    log.warn(
      { reason: err instanceof Error ? err.message : String(err) },
      'no summary model configured: extractive summaries (the user messages, shortened)',
    );
    return extractiveSummarizer(opts);
  }
}
