import { describe, expect, it } from 'vitest';
import type { ChatMessage } from '@va/protocol';
import { ProviderError, textOf, type LLM, type LLMEvent } from '@va/providers';
import { waitFor } from '@va/testkit';

/**
 * The one suite every LLM adapter passes (DESIGN §7). `make` must return an adapter whose reply to a question
 * has at least five deltas and takes a moment to stream (so "abort mid-stream" is mid-stream).
 */
export interface LlmConformanceOptions {
  /** How often the provider side has seen a chat stop early: a server's disconnect count, a fake's abort count. */
  abortsSeen: () => number;
  /** Adapters whose provider fails (unreachable, HTTP 500, scripted failure), by what goes wrong. */
  failing: Record<string, () => LLM>;
}

const QUESTION: ChatMessage[] = [
  { role: 'system', content: 'You are a voice assistant. Answer in two or three sentences.' },
  { role: 'user', content: 'How do I keep my tomato plants healthy in summer?' },
];

/** The text deltas of a chat stream. */
export async function collect(stream: AsyncIterable<LLMEvent>): Promise<string[]> {
  const deltas: string[] = [];
  for await (const delta of textOf(stream)) deltas.push(delta);
  return deltas;
}

export function describeLlmConformance(name: string, make: () => LLM, opts: LlmConformanceOptions): void {
  describe(`LLM conformance: ${name}`, () => {
    it('streams at least two deltas that make up a non-empty text', async () => {
      const deltas = await collect(
        make().chat(QUESTION, { temperature: 0.2, maxTokens: 200 }, new AbortController().signal),
      );
      expect(deltas.length).toBeGreaterThanOrEqual(2);
      expect(deltas.every((d) => typeof d === 'string' && d !== '')).toBe(true);
      expect(deltas.join('').trim()).not.toBe('');
    });

    it('ends iteration soon after an abort mid-stream, and the provider sees the abort', async () => {
      const llm = make();
      const full = await collect(llm.chat(QUESTION, {}, new AbortController().signal));
      expect(full.length, 'the reply must be long enough to abort in the middle').toBeGreaterThanOrEqual(5);

      const before = opts.abortsSeen();
      const controller = new AbortController();
      const stream = llm.chat(QUESTION, {}, controller.signal)[Symbol.asyncIterator]();
      for (let i = 0; i < 2; i++) expect((await stream.next()).done).toBe(false);
      controller.abort();
      // Ends quietly (an abort is the caller's choice, not a failure) without streaming the rest.
      const afterAbort: LLMEvent[] = [];
      for (let next = await stream.next(); !next.done; next = await stream.next()) {
        if (next.value.type === 'text') afterAbort.push(next.value);
      }
      expect(afterAbort.length).toBeLessThanOrEqual(1);
      await waitFor(() => opts.abortsSeen() > before, { timeoutMs: 5_000, message: `${name}: provider saw the abort` });
    });

    it('yields nothing for a signal aborted before the call', async () => {
      const controller = new AbortController();
      controller.abort();
      expect(await collect(make().chat(QUESTION, {}, controller.signal))).toEqual([]);
    });

    it('accepts system, user and assistant messages', async () => {
      const history: ChatMessage[] = [
        { role: 'system', content: 'You are a voice assistant.' },
        { role: 'user', content: 'I grow tomatoes on my balcony.' },
        { role: 'assistant', content: 'Balcony tomatoes do well with plenty of sun.' },
        { role: 'user', content: 'How often should I water them?' },
      ];
      const deltas = await collect(make().chat(history, {}, new AbortController().signal));
      expect(deltas.join('').trim()).not.toBe('');
    });

    for (const [what, makeFailing] of Object.entries(opts.failing)) {
      it(`throws a ProviderError, rather than hangs, when ${what}`, { timeout: 15_000 }, async () => {
        const attempt = collect(makeFailing().chat(QUESTION, {}, new AbortController().signal));
        // A typed error the caller can act on (fail over, or not), never a raw SDK or socket error.
        await expect(attempt).rejects.toBeInstanceOf(ProviderError);
      });
    }
  });
}
