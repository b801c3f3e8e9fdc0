/**
 * A Set that keeps only its newest `max` entries (in insertion order): what a long session remembers of its
 * turns (cancelled, finished, started) without growing for hours.
 */
export class RecentSet<T> extends Set<T> {
  constructor(readonly max: number) {
    super();
  }

  override add(value: T): this {
    super.add(value);
    while (this.size > this.max) this.delete(this.values().next().value as T);
    return this;
  }
}

/** A Map that keeps only its newest `max` entries (in insertion order). */
export class RecentMap<K, V> extends Map<K, V> {
  constructor(readonly max: number) {
    super();
  }

  override set(key: K, value: V): this {
    super.set(key, value);
    while (this.size > this.max) this.delete(this.keys().next().value as K);
    return this;
  }
}
