import { headers as natsHeaders, type MsgHdrs, type NatsConnection } from '@nats-io/transport-node';
import { channels, parseSessionSubject, type ErrorEvent } from '@va/protocol';
import type { Logger } from '@va/telemetry';
import type { BusCounters } from './counters.js';
import { encodeJson, RequestRefusedError } from './types.js';

/** Marks an answer to a request as an error event instead of a reply. */
export const ERROR_HEADER = 'va-error';
/** At most one `message rejected` log line per channel this often. */
const REJECT_LOG_EVERY_MS = 5000;

/**
 * How a connection tells what went wrong: error events on the session's error subject (or the global one),
 * error answers into an asker's inbox, and rejected messages — every one counted, their log lines bounded.
 */
export class ErrorReporter {
  /** Per channel: when a rejection was last logged, and how many since were not. */
  private readonly rejectLogged = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly nc: NatsConnection,
    private readonly stage: string,
    private readonly log: Logger,
    private readonly counters: BusCounters,
  ) {}

  /** Publishes an error event on the session's error subject (or the global one). */
  publish(subject: string, code: ErrorEvent['code'], message: string): ErrorEvent {
    const event = this.event(code, message, subject.slice(0, 256));
    const parsed = parseSessionSubject(subject);
    const target = parsed ? channels.error.subject(parsed.sessionId) : channels.errorGlobal.subject;
    // A handler that fails while the connection closes cannot report on the bus: log it instead of throwing.
    if (this.nc.isClosed()) this.log.warn({ event }, 'error event not published: connection closed');
    else this.nc.publish(target, encodeJson(event));
    return event;
  }

  /** A handler failed on a message of `subject`: logged (on `log`, default the bus's) and reported on `error`. */
  handlerFailed(subject: string, err: unknown, log: Logger = this.log): void {
    log.error({ err, subject }, 'message handler failed');
    this.publish(subject, 'internal', err instanceof Error ? err.message : String(err));
  }

  /** A request handler threw: the asker gets the error (`forbidden` when it was refused) instead of a reply. */
  requestFailed(subject: string, reply: string, err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    const refused = err instanceof RequestRefusedError;
    if (refused) this.log.warn({ subject, reason: message }, 'request refused');
    else this.log.error({ err, subject }, 'request handler failed');
    this.answer(reply, this.event(refused ? 'forbidden' : 'internal', message, subject));
  }

  /** Drops a message: counted, logged (rate-limited) and reported; an asker waiting on `reply` gets the error. */
  reject(subject: string, channel: string, code: ErrorEvent['code'], message: string, reply?: string): void {
    this.counters.rejected(channel);
    this.logRejection(subject, channel, code, message);
    // Error events about error events would loop between two services that disagree on the schema.
    if (channel === channels.error.name) return;
    const event = this.publish(subject, code, message);
    if (reply) this.answer(reply, event);
  }

  /** Drops a message nats-server relayed (see `serverRelay`): never answered, its reply subject is not the sender's. */
  rejectForged(subject: string, channel: string, relay: string): void {
    this.reject(subject, channel, 'forged', `${channel}: ${relay}, not published by its sender; dropped`);
  }

  private event(code: ErrorEvent['code'], message: string, subject: string): ErrorEvent {
    return { stage: this.stage, code, message: message.slice(0, 1000), subject };
  }

  private answer(reply: string, event: ErrorEvent): void {
    this.nc.publish(reply, encodeJson(event), { headers: errorHeaders() });
  }

  /**
   * A flood of bad messages (a hostile or broken client) must not turn into a flood of log lines: the first per
   * channel is logged, then one line per REJECT_LOG_EVERY_MS saying how many were not. Counter and error
   * events still cover every one.
   */
  private logRejection(subject: string, channel: string, code: ErrorEvent['code'], message: string): void {
    const now = Date.now();
    const last = this.rejectLogged.get(channel);
    if (!last || now - last.at >= REJECT_LOG_EVERY_MS) {
      const suppressed = last?.suppressed ? { suppressed: last.suppressed } : {};
      this.log.warn({ subject, channel, code, reason: message, ...suppressed }, 'message rejected');
      this.rejectLogged.set(channel, { at: now, suppressed: 0 });
    } else {
      last.suppressed++;
    }
  }
}

function errorHeaders(): MsgHdrs {
  const h = natsHeaders();
  h.set(ERROR_HEADER, '1');
  return h;
}
