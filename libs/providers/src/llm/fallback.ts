import type { ChatMessage } from '@va/protocol';
import { ProviderError } from '../errors.js';
import { attemptSignal, errorMessage, firstOutput, type FailoverEvent } from '../failover.js';
import { ProviderHealth } from '../health.js';
import type { LLM, LLMEvent, LLMOptions, ServedBy } from '../types.js';

export interface FallbackLLMOptions {
  /**
   * An LLM whose first token takes longer than this is aborted and the next one is tried. The last LLM in the
   * list gets no such limit: with nothing left to fail over to, a slow answer beats none.
   */
  ttftTimeoutMs: number;
  /** Called on every failover (logs, metrics). */
  onFailover?: (event: FailoverEvent) => void;
  /** A provider that failed is tried only after the others for this long (then it is first again). Default 30 s. */
  unhealthyMs?: number;
}

/**
 * Tries LLMs in order. Fails over on an error before the first token or on a first token slower than
 * `ttftTimeoutMs`. Once a token has been yielded the answer is committed to that LLM: a later error propagates,
 * because switching mid-answer would speak two different answers glued together. A provider that failed is set
 * aside for `unhealthyMs` (the next turns start with the others) and then taken back. Which one served, and
 * who was given up on, is told in a `served-by` event before the first token.
 */
export class FallbackLLM implements LLM {
  readonly provider = 'fallback';
  readonly model: string;
  readonly #llms: readonly LLM[];
  readonly #opts: FallbackLLMOptions;
  readonly health: ProviderHealth;

  constructor(llms: readonly LLM[], opts: FallbackLLMOptions) {
    if (llms.length === 0) throw new Error('FallbackLLM needs at least one LLM');
    this.#llms = llms;
    this.#opts = opts;
    this.health = new ProviderHealth(llms.length, opts.unhealthyMs ?? 30_000);
    this.model = llms.map((llm) => `${llm.provider}/${llm.model}`).join(' > ');
  }

  async prewarm(): Promise<void> {
    await Promise.all(this.#llms.map((llm) => llm.prewarm?.()));
  }

  async *chat(messages: readonly ChatMessage[], opts: LLMOptions, signal: AbortSignal): AsyncIterable<LLMEvent> {
    const errors: unknown[] = [];
    const failovers: ServedBy['failovers'] = [];
    const order = this.health.order();
    for (const [attemptNo, index] of order.entries()) {
      const llm = this.#llms[index]!;
      if (signal.aborted) return;
      // Each attempt has its own controller so a slow or abandoned attempt can be cancelled alone.
      const attempt = attemptSignal(signal);
      // An agent's model is its stage's configured provider's to serve; a fallback keeps its own.
      const asked = index === 0 || opts.model === undefined ? opts : { ...opts, model: undefined };
      const stream = llm.chat(messages, asked, attempt.signal)[Symbol.asyncIterator]();
      try {
        const isLast = attemptNo === order.length - 1;
        const timeoutMs = isLast ? Infinity : this.#opts.ttftTimeoutMs;
        // The first text or tool calls commit the answer to this LLM.
        const first = await firstOutput(stream, {
          timeoutMs,
          commits: (e) => e.type === 'text' || e.type === 'tool-calls',
        });
        if (first.kind === 'done') {
          this.health.markServed(index);
          return;
        }
        if (first.kind === 'value') {
          this.health.markServed(index);
          // Preferred providers that were not even tried (set aside as unhealthy) are given up on too.
          for (const skipped of this.#llms.slice(0, index)) {
            if (!failovers.some((f) => f.provider === label(skipped))) {
              failovers.push({ provider: label(skipped), reason: 'unhealthy' });
            }
          }
          yield {
            type: 'served-by',
            provider: llm.provider,
            model: llm.model,
            fallback: index !== 0,
            failovers,
          };
          yield first.value;
          for (let next = await stream.next(); !next.done; next = await stream.next()) yield next.value;
          return;
        }
        if (signal.aborted) return;
        const error = first.kind === 'error' ? first.error : new Error(`no first token within ${timeoutMs} ms`);
        errors.push(new Error(`${label(llm)}: ${errorMessage(error)}`, { cause: error }));
        failovers.push({ provider: label(llm), reason: first.kind, message: errorMessage(error) });
        this.health.markFailed(index);
        this.#opts.onFailover?.({ provider: label(llm), reason: first.kind, error });
      } finally {
        // Stops whatever is still running: the slow attempt, or the committed one if our consumer left early.
        attempt.end();
        void Promise.resolve(stream.return?.()).catch(() => undefined);
      }
    }
    throw new ProviderError(
      'fallback',
      errors.every((e) => e instanceof Error && e.cause instanceof ProviderError && !e.cause.retryable)
        ? 'bad-request'
        : 'server',
      `all LLMs failed before the first token: ${errors.map(errorMessage).join('; ')}`,
      { cause: new AggregateError(errors) },
    );
  }
}

function label(llm: LLM): string {
  return `${llm.provider}/${llm.model}`;
}
