/** A bound on what may wait in a queue, and what happens to what does not fit. */
export interface QueueBound<T> {
  /**
   * At most this much may wait (in `weight` units: items by default, e.g. ms of audio with a weight); pushing past
   * it drops the oldest waiting items until the new one fits. Default: unbounded.
   */
  capacity?: number;
  /** How much one item counts against `capacity` (default 1). */
  weight?: (item: T) => number;
  /** Called with each item dropped to keep the bound (count it, warn about it). */
  onDrop?: (item: T) => void;
}

/** What a bounded queue holds and has dropped, for tests and health details. */
export interface QueueStats {
  /** Items waiting now, and their weight. */
  size: number;
  weight: number;
  /** The most weight that ever waited at once: never above `capacity`. */
  highWater: number;
  capacity: number;
  /** Items dropped to keep the bound. */
  dropped: number;
}

/** Waiting items with a weight bound: drop-oldest. Under AsyncQueue and SerialBacklog, and a synchronous FIFO on its own. */
export class BoundedBuffer<T> {
  readonly items: T[] = [];
  private head = 0;
  weight = 0;
  highWater = 0;
  dropped = 0;
  readonly capacity: number;
  private readonly weigh: (item: T) => number;
  private readonly onDrop: ((item: T) => void) | undefined;

  constructor(bound: QueueBound<T>) {
    this.capacity = bound.capacity ?? Infinity;
    this.weigh = bound.weight ?? (() => 1);
    this.onDrop = bound.onDrop;
  }

  get size(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    const w = this.weigh(item);
    if (w > this.capacity) return this.drop(item);
    // Oldest first out: a stage that is behind catches up on the newest audio, not on what is already stale.
    while (this.size > 0 && this.weight + w > this.capacity) this.drop(this.shift()!);
    this.items.push(item);
    this.weight += w;
    if (this.weight > this.highWater) this.highWater = this.weight;
  }

  shift(): T | undefined {
    if (this.size === 0) return undefined;
    const item = this.items[this.head]!;
    this.items[this.head++] = undefined as T;
    // Compact now and then: shift() on a long array is O(n) per call.
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items.splice(0, this.head);
      this.head = 0;
    }
    this.weight = Math.max(0, this.weight - this.weigh(item));
    if (this.size === 0) this.weight = 0;
    return item;
  }

  clear(): void {
    this.items.length = 0;
    this.head = 0;
    this.weight = 0;
  }

  private drop(item: T): void {
    this.dropped++;
    this.onDrop?.(item);
  }

  stats(): QueueStats {
    return {
      size: this.size,
      weight: this.weight,
      highWater: this.highWater,
      capacity: this.capacity,
      dropped: this.dropped,
    };
  }
}

/**
 * The one async queue of the codebase: a push-fed AsyncIterable between callbacks (bus handlers, worker
 * messages, sockets, timers) and one consumer (a provider's stream transformer, an async generator).
 * `end()` finishes the stream after what is queued; `fail()` makes the consumer throw once it has taken what was
 * queued before; `cancel()` drops what is queued and ends. With a `capacity`, a consumer slower than its producer
 * loses the oldest items instead of growing the queue without bound. Items pushed after the end are dropped.
 */
export class AsyncQueue<T> implements AsyncIterable<T>, AsyncIterator<T> {
  private readonly items: BoundedBuffer<T>;
  private waiter: ((r: IteratorResult<T>) => void) | undefined;
  private failer: ((err: unknown) => void) | undefined;
  private ended = false;
  private failure: { error: unknown } | undefined;

  constructor(bound: QueueBound<T> = {}) {
    this.items = new BoundedBuffer(bound);
  }

  /** Items pushed but not yet taken. */
  get size(): number {
    return this.items.size;
  }

  /** Ended, failed or cancelled: nothing more will be queued. */
  get closed(): boolean {
    return this.ended;
  }

  get stats(): QueueStats {
    return this.items.stats();
  }

  push(item: T): void {
    if (this.ended) return;
    if (this.waiter) {
      const w = this.waiter;
      this.clearWaiters();
      w({ value: item, done: false });
    } else {
      this.items.push(item);
    }
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.settleWaiter();
  }

  fail(error: unknown): void {
    if (this.ended) return;
    this.failure = { error };
    this.ended = true;
    this.settleWaiter();
  }

  /** Stops at once: what is queued is dropped, the consumer's next read ends the stream. */
  cancel(): void {
    this.items.clear();
    this.ended = true;
    this.settleWaiter();
  }

  next(): Promise<IteratorResult<T>> {
    if (this.items.size > 0) return Promise.resolve({ value: this.items.shift()!, done: false });
    if (this.failure) return Promise.reject(this.failure.error);
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise<IteratorResult<T>>((resolve, reject) => {
      this.waiter = resolve;
      this.failer = reject;
    });
  }

  /** The consumer stopped early (break, abort): nothing more will be read. */
  return(): Promise<IteratorResult<T>> {
    this.ended = true;
    this.items.clear();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return this;
  }

  /** A consumer waiting on an empty queue learns that it ended (or failed). */
  private settleWaiter(): void {
    if (!this.waiter || this.items.size > 0) return;
    const [w, f] = [this.waiter, this.failer];
    this.clearWaiters();
    if (this.failure) f?.(this.failure.error);
    else w({ value: undefined, done: true });
  }

  private clearWaiters(): void {
    this.waiter = undefined;
    this.failer = undefined;
  }
}

/**
 * Runs a handler on each item in arrival order, one call at a time. A synchronous handler runs at once (its
 * throw goes to the caller); while an asynchronous call is in flight, later items wait in a bounded backlog
 * (drop-oldest) — so a bus subscription's handler returns at once and nothing piles up unbounded behind it.
 */
export class SerialBacklog<T> {
  private readonly waiting: BoundedBuffer<T>;
  private readonly onError: (err: unknown, item: T) => void;
  private busy = false;
  private closed = false;

  constructor(
    private readonly run: (item: T) => void | Promise<void>,
    bound: QueueBound<T> & {
      /** An asynchronous call failed (a synchronous one throws to the pusher). */
      onError: (err: unknown, item: T) => void;
    },
  ) {
    this.waiting = new BoundedBuffer(bound);
    this.onError = bound.onError;
  }

  get stats(): QueueStats {
    return this.waiting.stats();
  }

  push(item: T): void {
    if (this.closed) return;
    if (this.busy) return this.waiting.push(item);
    this.call(item);
  }

  /** Drops what waits and runs nothing more. */
  close(): void {
    this.closed = true;
    this.waiting.clear();
  }

  private call(item: T): void {
    const result = this.run(item);
    if (!isPromise(result)) return;
    this.busy = true;
    result.then(
      () => this.next(),
      (err: unknown) => {
        this.onError(err, item);
        this.next();
      },
    );
  }

  private next(): void {
    this.busy = false;
    while (!this.busy && !this.closed && this.waiting.size > 0) {
      const item = this.waiting.shift()!;
      try {
        this.call(item);
      } catch (err) {
        this.onError(err, item);
      }
    }
  }
}

function isPromise(v: unknown): v is Promise<unknown> {
  return typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';
}
