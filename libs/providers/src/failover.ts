import { linkAbort } from '@va/stream';
import { ATTR, counter, METRIC } from '@va/telemetry';

/**
 * Why a fallback chain gave up on a provider, one vocabulary for every kind: it failed (`error`), its first
 * output (first token, first audio) came later than the chain's budget (`timeout`), or it was set aside because
 * it failed recently (`unhealthy`, not even tried).
 */
export type FailoverReason = 'error' | 'timeout' | 'unhealthy';

/** A chain moved past a provider. */
export interface FailoverEvent {
  provider: string;
  reason: Exclude<FailoverReason, 'unhealthy'>;
  error?: unknown;
}

/** Counts failovers in `va.fallbacks` by stage, provider and reason (what every service passes its chain). */
export function failoverCounter(stage: string): (event: { provider: string; reason: FailoverReason }) => void {
  return (e) =>
    counter(METRIC.fallbacks).add(1, {
      [ATTR.stage]: stage,
      [ATTR.provider]: e.provider,
      [ATTR.failoverReason]: e.reason,
    });
}

/** The first output of an attempt, or why there was none. */
export type FirstOutput<T> =
  { kind: 'value'; value: T } | { kind: 'done' } | { kind: 'error'; error: unknown } | { kind: 'timeout' };

export interface FirstOutputOptions<T> {
  /** Budget for the first output; Infinity = none (the last provider of a chain: a slow answer beats none). */
  timeoutMs: number;
  /** Where the budget runs from (performance.now); unset = from this call. A TTS counts from its first text. */
  startedAt?: () => number | undefined;
  /** Which items commit the attempt (default: any); the others before it are skipped (an LLM's usage event). */
  commits?: (item: T) => boolean;
}

/** The first committing item of `it`, unless it ends, throws, or is later than the budget. Never throws. */
export async function firstOutput<T>(it: AsyncIterator<T>, opts: FirstOutputOptions<T>): Promise<FirstOutput<T>> {
  const read = (async (): Promise<FirstOutput<T>> => {
    try {
      for (let next = await it.next(); !next.done; next = await it.next()) {
        if (!opts.commits || opts.commits(next.value)) return { kind: 'value', value: next.value };
      }
      return { kind: 'done' };
    } catch (error) {
      return { kind: 'error', error };
    }
  })();
  if (opts.timeoutMs === Infinity) return read;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<FirstOutput<T>>((resolve) => {
    const { startedAt } = opts;
    if (!startedAt) {
      timer = setTimeout(() => resolve({ kind: 'timeout' }), opts.timeoutMs);
      return;
    }
    // The start is not known yet (no text given so far): checked every 20 ms.
    timer = setInterval(() => {
      const at = startedAt();
      if (at !== undefined && performance.now() - at > opts.timeoutMs) resolve({ kind: 'timeout' });
    }, 20);
  });
  try {
    return await Promise.race([read, timeout]);
  } finally {
    clearTimeout(timer); // clears an interval too (one timer type in Node)
  }
}

/** One attempt's own abort, following the caller's (`linkAbort`): a slow or abandoned attempt is stopped alone. */
export function attemptSignal(signal: AbortSignal): { signal: AbortSignal; end(): void } {
  const link = linkAbort(signal);
  return {
    signal: link.controller.signal,
    end: () => {
      link.unlink();
      link.controller.abort();
    },
  };
}

/** An error's message (or the thrown value as text): what a chain's summary error quotes per provider. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
