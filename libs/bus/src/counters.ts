import { ATTR, counter, METRIC, observableCounter } from '@va/telemetry';
import type { BusStats } from './types.js';

/** What one connection published, received and rejected: totals in `stats`, and per channel as OTel metrics. */
export class BusCounters {
  readonly stats: BusStats = { published: 0, received: 0, rejected: 0 };
  /**
   * Messages per channel, exported as `va.messages.published|received` when metrics are read: a plain map
   * increment per message instead of an OTel counter call (attribute hashing) on every audio frame.
   */
  private readonly publishedBy = new Map<string, number>();
  private readonly receivedBy = new Map<string, number>();

  constructor(private readonly stage: string) {
    const per = (counts: Map<string, number>) => () =>
      [...counts].map(([channel, n]) => ({ value: n, attributes: { [ATTR.stage]: stage, channel } }));
    observableCounter(METRIC.messagesPublished, per(this.publishedBy));
    observableCounter(METRIC.messagesReceived, per(this.receivedBy));
  }

  published(channel: string): void {
    this.stats.published++;
    this.publishedBy.set(channel, (this.publishedBy.get(channel) ?? 0) + 1);
  }

  received(channel: string): void {
    this.stats.received++;
    this.receivedBy.set(channel, (this.receivedBy.get(channel) ?? 0) + 1);
  }

  rejected(channel: string): void {
    this.stats.rejected++;
    counter(METRIC.messagesRejected).add(1, { [ATTR.stage]: this.stage, channel });
  }
}
