import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOCAL_MODEL_ID, startLocalLlmServer, type LocalLlmServer } from '@va/local-llm';
import { FakeLLM } from '@va/providers';
import { createLogger } from '@va/telemetry';
import type { HistoryEntry } from '@va/context';
import { CONTEXT_DEFAULTS, ContextEnv } from '../src/options.js';
import {
  extractiveSummarizer,
  llmSummarizer,
  SUMMARY_PROMPT,
  summarizerFromEnv,
  transcriptOf,
  type SummaryInput,
} from '../src/summarizer.js';

const entries: HistoryEntry[] = [
  { turnId: 't1', role: 'user', content: 'What is the weather in Paris tomorrow?' },
  {
    turnId: 't1',
    role: 'assistant',
    content: '',
    toolCalls: [{ id: 'c1', name: 'get_weather', arguments: '{"city":"Paris"}' }],
  },
  { turnId: 't1', role: 'tool', toolCallId: 'c1', name: 'get_weather', content: '{"sky":"rain"}', ok: true },
  { turnId: 't1', role: 'assistant', content: 'Rain is expected in Paris.', interrupted: true },
  { turnId: 't2', role: 'user', content: 'Then book me a table at an Italian restaurant.' },
  { turnId: 't2', role: 'assistant', content: 'Booked for eight.' },
];
const input: SummaryInput = { previous: 'The user planned a trip to France.', entries };
const never = new AbortController().signal;

/** A logger whose lines the test can read. */
function recordingLogger() {
  const lines: { level: string; msg: string }[] = [];
  const log = createLogger('test');
  for (const level of ['info', 'warn', 'error'] as const) {
    log[level] = ((obj: unknown, msg?: string) => {
      lines.push({ level, msg: typeof obj === 'string' ? obj : (msg ?? '') });
    }) as never;
  }
  return { log, lines };
}

describe('summarizer', () => {
  it('asks the model with the one summary prompt: the summary so far, then the new messages', async () => {
    const llm = new FakeLLM({ reply: '  The user   plans a Paris trip; rain expected; table booked.  ' });
    const summary = await llmSummarizer(llm, CONTEXT_DEFAULTS).summarize(input, never);
    expect(summary).toBe('The user plans a Paris trip; rain expected; table booked.');
    const [system, user] = llm.calls[0]!;
    expect(system).toEqual({ role: 'system', content: SUMMARY_PROMPT });
    expect(user!.content).toBe(transcriptOf(input));
    expect(user!.content.split('\n')).toEqual([
      'Summary so far: The user planned a trip to France.',
      '',
      'New messages:',
      'User: What is the weather in Paris tomorrow?',
      'Assistant called get_weather({"city":"Paris"})',
      'Tool result (get_weather): {"sky":"rain"}',
      'Assistant: Rain is expected in Paris. [interrupted]',
      'User: Then book me a table at an Italian restaurant.',
      'Assistant: Booked for eight.',
    ]);
    expect(llm.options[0]).toMatchObject({ maxTokens: CONTEXT_DEFAULTS.summaryMaxTokens });
  });

  it('never returns half a summary: an aborted or empty reply throws; a long one is cut', async () => {
    const slow = new FakeLLM({ reply: 'a b c d e f', ttftMs: 5, tokensPerSecond: 20 });
    const ctl = new AbortController();
    const run = llmSummarizer(slow, CONTEXT_DEFAULTS).summarize(input, ctl.signal);
    setTimeout(() => ctl.abort(new Error('session closed')), 60);
    await expect(run).rejects.toThrow('session closed');
    await expect(llmSummarizer(new FakeLLM({ reply: '' }), CONTEXT_DEFAULTS).summarize(input, never)).rejects.toThrow(
      /empty/,
    );
    const long = await llmSummarizer(new FakeLLM({ reply: 'word '.repeat(1000) }), {
      ...CONTEXT_DEFAULTS,
      summaryMaxChars: 200,
    }).summarize(input, never);
    expect(long.length).toBeLessThanOrEqual(200);
  });

  it('without a model: the user messages, shortened, after the summary so far, bounded', async () => {
    const summary = await extractiveSummarizer(CONTEXT_DEFAULTS).summarize(input, never);
    expect(summary).toBe(
      'The user planned a trip to France. The user said: What is the weather in Paris tomorrow; ' +
        'Then book me a table at an Italian restaurant. The assistant looked up get_weather.',
    );
    const bounded = extractiveSummarizer({ summaryMaxChars: 100 });
    let rolling: string | null = null;
    for (let i = 0; i < 20; i++) {
      rolling = await bounded.summarize(
        { previous: rolling, entries: [{ turnId: `t${i}`, role: 'user', content: `question number ${i}` }] },
        never,
      );
      expect(rolling.length).toBeLessThanOrEqual(100);
    }
    expect(rolling).toContain('question number 19');
  });

  it('from env: SUMMARY_LLM_* (or LLM_*) picks the model; none configured → extractive, said once', async () => {
    const { log, lines } = recordingLogger();
    const none = await summarizerFromEnv({}, CONTEXT_DEFAULTS, log);
    expect(none.provider).toBe('extractive');
    expect(lines.filter((l) => l.level === 'warn')).toHaveLength(1);
    expect(lines[0]!.msg).toMatch(/no summary model configured/);
    const own = await summarizerFromEnv(
      { SUMMARY_LLM_BASE_URL: 'http://127.0.0.1:9/v1', LLM_MODEL: 'small', DEEP_LLM_MODEL: 'large' },
      CONTEXT_DEFAULTS,
      log,
    );
    expect([own.provider, own.model]).toEqual(['openai', 'small']);
    const shared = await summarizerFromEnv(
      { LLM_BASE_URL: 'http://127.0.0.1:9/v1', LLM_MODEL: 'm' },
      CONTEXT_DEFAULTS,
      log,
    );
    expect(shared.model).toBe('m');
  });

  it('CONTEXT_* env: typed defaults, and a window that could never fold is refused', () => {
    expect(ContextEnv.parse({})).toEqual(CONTEXT_DEFAULTS);
    expect(ContextEnv.parse({ CONTEXT_KEEP_RECENT: '6', CONTEXT_SUMMARIZE_AFTER: '10' })).toMatchObject({
      keepRecent: 6,
      summarizeAfter: 10,
    });
    expect(ContextEnv.safeParse({ CONTEXT_KEEP_RECENT: '12', CONTEXT_SUMMARIZE_AFTER: '12' }).success).toBe(false);
  });
});

describe('offline summaries (local rule-based LLM server)', () => {
  let server: LocalLlmServer;
  beforeAll(async () => {
    server = await startLocalLlmServer({ ttftMs: 5, tokensPerSecond: 500 });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('the demo’s summary model answers the summary prompt with the topics the user asked about', async () => {
    const { log } = recordingLogger();
    const summarizer = await summarizerFromEnv(
      { SUMMARY_LLM_BASE_URL: server.url, LLM_MODEL: LOCAL_MODEL_ID },
      CONTEXT_DEFAULTS,
      log,
    );
    const first = await summarizer.summarize({ previous: null, entries }, never);
    expect(first).toMatch(
      /^The user asked about .*Paris.*restaurant.*; the assistant answered and looked things up\.$/,
    );
    const next = await summarizer.summarize(
      { previous: first, entries: [{ turnId: 't3', role: 'user', content: 'What is the capital of Spain?' }] },
      never,
    );
    for (const topic of ['Paris', 'restaurant', 'Spain']) expect(next).toContain(topic);
  });
});
