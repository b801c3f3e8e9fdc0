import type { Msg, NatsConnection } from '@nats-io/transport-node';
import { channels, type RequestChannel, type SessionRequestChannel } from '@va/protocol';
import type { z } from 'zod';
import type { BusCounters } from './counters.js';
import { ERROR_HEADER, type ErrorReporter } from './errors.js';
import { messageMeta, type MessageGate } from './gate.js';
import type { Subscriptions } from './subscriptions.js';
import { newHeaders } from './trace-headers.js';
import {
  BusRequestError,
  decodeJson,
  encodeJson,
  type BusSubscription,
  type RequestHandler,
  type RequestOptions,
  type SubscribeOptions,
} from './types.js';

type AnyRequestChannel = RequestChannel | SessionRequestChannel;

/** Requests and their answers: the request, the reply and an error answer are each checked against a schema. */
export class RequestPath {
  constructor(
    private readonly nc: NatsConnection,
    private readonly counters: BusCounters,
    private readonly gate: MessageGate,
    private readonly errors: ErrorReporter,
    private readonly subs: Subscriptions,
  ) {}

  /** Asks on `subject`; an error answer or a reply that fails its schema throws a {@link BusRequestError}. */
  async request<C extends AnyRequestChannel>(
    subject: string,
    ch: C,
    msg: z.input<C['schema']>,
    opts: RequestOptions,
  ): Promise<z.output<C['reply']>> {
    const body = ch.schema.parse(msg);
    const headers = newHeaders({}, opts.context);
    this.counters.published(ch.name);
    const m = await this.nc.request(subject, encodeJson(body), { timeout: opts.timeoutMs ?? 2000, headers });
    return readReply(ch, m);
  }

  /** Answers requests on `subject`, into the asker's inbox only; a handler that throws answers with the error. */
  serve<C extends AnyRequestChannel>(
    subject: string,
    ch: C,
    handler: RequestHandler<C>,
    opts: SubscribeOptions,
  ): BusSubscription {
    return this.subs.consume(subject, opts, async (m) => {
      const req = this.gate.request(ch, m);
      if (req === undefined) return;
      const meta = messageMeta(m);
      try {
        const reply = ch.reply.parse(await handler(req.value as z.output<C['schema']>, meta));
        this.nc.publish(req.reply, encodeJson(reply), { headers: newHeaders({}, meta.context) });
      } catch (err) {
        this.errors.requestFailed(m.subject, req.reply, err);
      }
    });
  }
}

/** The reply to a request, checked against its schema; an error answer throws with its event. */
function readReply<C extends AnyRequestChannel>(ch: C, m: Msg): z.output<C['reply']> {
  const raw = decodeJson(m.data);
  if (m.headers?.has(ERROR_HEADER)) {
    const event = channels.errorGlobal.schema.safeParse(raw);
    throw new BusRequestError(
      `${ch.name} failed: ${event.success ? event.data.message : 'unreadable error'}`,
      event.success ? event.data : undefined,
    );
  }
  const reply = ch.reply.safeParse(raw);
  if (!reply.success) throw new BusRequestError(`${ch.name}: reply failed its schema: ${reply.error.message}`);
  return reply.data as z.output<C['reply']>;
}
