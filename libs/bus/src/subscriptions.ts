import type { Msg, NatsConnection } from '@nats-io/transport-node';
import type { Logger } from '@va/telemetry';
import type { ErrorReporter } from './errors.js';
import type { BusSubscription, SubscribeOptions } from './types.js';

/**
 * The subscriptions of one connection, and every loop that runs over them: a drain waits until each has ended
 * and its last handler call has returned.
 */
export class Subscriptions {
  private readonly loops = new Set<Promise<void>>();

  constructor(
    private readonly nc: NatsConnection,
    private readonly log: Logger,
    private readonly errors: ErrorReporter,
  ) {}

  /** Counts `loop` among what {@link settled} waits for. */
  track(loop: Promise<void>): Promise<void> {
    this.loops.add(loop);
    void loop.finally(() => this.loops.delete(loop));
    return loop;
  }

  /** Resolves when every tracked loop has ended. */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.loops]);
  }

  /** Hands a subject's messages to `onMsg` one at a time, each awaited before the next. */
  consume(subject: string, opts: SubscribeOptions, onMsg: (m: Msg) => void | Promise<void>): BusSubscription {
    const sub = this.nc.subscribe(subject, opts.queue ? { queue: opts.queue } : {});
    const closed = this.track(
      (async () => {
        try {
          for await (const m of sub) {
            try {
              await onMsg(m);
            } catch (err) {
              // A handler bug must not end the subscription: log it, report it, keep serving.
              this.errors.handlerFailed(m.subject, err);
            }
          }
        } catch (err) {
          this.refused(subject, err);
        }
      })(),
    );
    return { unsubscribe: () => sub.unsubscribe(), closed };
  }

  /**
   * Hands a subject's messages to `onMsg` synchronously, in order, straight from the client's read loop (no async
   * iterator and no promise per message): for audio frames. `onMsg` reports its own failures.
   */
  listen(subject: string, opts: SubscribeOptions, onMsg: (m: Msg) => void): BusSubscription {
    const sub = this.nc.subscribe(subject, {
      ...(opts.queue ? { queue: opts.queue } : {}),
      callback: (err, m) => {
        if (err) this.refused(subject, err);
        else onMsg(m);
      },
    });
    return { unsubscribe: () => sub.unsubscribe(), closed: this.track(sub.closed.then(() => undefined)) };
  }

  private refused(subject: string, err: unknown): void {
    // The server ended the subscription (a permissions violation: this user may not read the subject).
    this.log.error({ err, subject }, 'subscription refused');
  }
}
