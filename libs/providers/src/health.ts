/**
 * Which of an ordered list of providers to try first. A provider that failed is set aside for `unhealthyMs`
 * (tried only after the healthy ones), then taken back: the next call tries it first again. No probing: the
 * next real request is the probe, and it costs nothing when the provider is still down (it goes last).
 */
export class ProviderHealth {
  readonly #unhealthyUntil: number[];

  constructor(
    count: number,
    private readonly unhealthyMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.#unhealthyUntil = Array.from({ length: count }, () => 0);
  }

  markFailed(index: number): void {
    this.#unhealthyUntil[index] = this.now() + this.unhealthyMs;
  }

  markServed(index: number): void {
    this.#unhealthyUntil[index] = 0;
  }

  isHealthy(index: number): boolean {
    return this.#unhealthyUntil[index]! <= this.now();
  }

  /** Indexes to try: healthy ones in configured order, then the set-aside ones, soonest back first. */
  order(): number[] {
    const all = this.#unhealthyUntil.map((_, i) => i);
    const healthy = all.filter((i) => this.isHealthy(i));
    const resting = all
      .filter((i) => !this.isHealthy(i))
      .sort((a, b) => this.#unhealthyUntil[a]! - this.#unhealthyUntil[b]!);
    return [...healthy, ...resting];
  }
}
