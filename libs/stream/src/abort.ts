/** What `raceAbort` resolves to once the work was aborted. */
export const ABORTED = Symbol('aborted');

export interface LinkedAbort {
  /** Aborted when the caller's signal fires, or by the work itself (cleanup, early `return()`). */
  controller: AbortController;
  /** Resolves to `ABORTED` when `controller` aborts: race it against anything awaited. */
  aborted: Promise<typeof ABORTED>;
  /** Stops following the caller's signal (call it in `finally`). */
  unlink(): void;
}

/**
 * A stream's own abort controller, following the caller's signal (with its reason): the stream can stop its
 * in-flight work without touching the caller's signal, and await anything against `aborted` so an abort ends a
 * blocked wait at once.
 */
export function linkAbort(signal: AbortSignal): LinkedAbort {
  const controller = new AbortController();
  const stop = () => controller.abort(signal.reason);
  signal.addEventListener('abort', stop, { once: true });
  const aborted = new Promise<typeof ABORTED>((resolve) =>
    controller.signal.addEventListener('abort', () => resolve(ABORTED), { once: true }),
  );
  return { controller, aborted, unlink: () => signal.removeEventListener('abort', stop) };
}

/** Yields what `source` gives until it ends or `link` aborts (a blocked `next()` does not hold up the abort). */
export async function* untilAborted<T>(
  source: { next(): Promise<IteratorResult<T>> },
  link: LinkedAbort,
): AsyncGenerator<T, void, undefined> {
  for (;;) {
    const next = await Promise.race([source.next(), link.aborted]);
    if (next === ABORTED || next.done) return;
    yield next.value;
    if (link.controller.signal.aborted) return;
  }
}
