/**
 * A one-consumer queue between callbacks (worker messages, timers) and an async generator. Items pushed after
 * close()/fail() are dropped; fail() makes the iteration throw once the items before it are taken; cancel()
 * (abort) also drops what is queued, so nothing more is yielded.
 */
export class Channel<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private ended = false;
  private failure: { error: unknown } | undefined;
  private wake: (() => void) | undefined;

  push(item: T): void {
    if (this.ended) return;
    this.items.push(item);
    this.notify();
  }

  close(): void {
    this.ended = true;
    this.notify();
  }

  cancel(): void {
    this.items.length = 0;
    this.close();
  }

  fail(error: unknown): void {
    if (this.ended) return;
    this.failure = { error };
    this.close();
  }

  get closed(): boolean {
    return this.ended;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      if (this.items.length > 0) {
        yield this.items.shift()!;
        continue;
      }
      if (this.failure) throw this.failure.error;
      if (this.ended) return;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}
