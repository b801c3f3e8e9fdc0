import type { NatsConnection } from '@nats-io/transport-node';
import type { GlobalChannel, JsonChannel, RequestChannel, SessionChannel, SessionRequestChannel } from '@va/protocol';
import type { z } from 'zod';
import type { BusCounters } from './counters.js';
import { messageMeta, type MessageGate } from './gate.js';
import type { Subscriptions } from './subscriptions.js';
import { newHeaders } from './trace-headers.js';
import {
  encodeJson,
  TURN_HEADER,
  type BusSubscription,
  type Handler,
  type PublishOptions,
  type SubscribeOptions,
} from './types.js';

/** JSON messages: checked against their channel's schema before they are sent and before a handler sees them. */
export class JsonPath {
  constructor(
    private readonly nc: NatsConnection,
    private readonly counters: BusCounters,
    private readonly gate: MessageGate,
    private readonly subs: Subscriptions,
  ) {}

  /** Publishes on `subject`, with `va-turn` set from the options or the message's `turnId`; a bad message throws. */
  send(
    ch: JsonChannel | RequestChannel | SessionRequestChannel,
    subject: string,
    msg: unknown,
    opts: PublishOptions & { reply?: string },
  ): void {
    const body = ch.schema.parse(msg) as Record<string, unknown>;
    const turnId = opts.turnId ?? (typeof body.turnId === 'string' ? body.turnId : undefined);
    const headers = newHeaders(
      { ...opts.headers, ...(turnId !== undefined ? { [TURN_HEADER]: turnId } : {}) },
      opts.context,
    );
    this.nc.publish(subject, encodeJson(body), { headers, ...(opts.reply ? { reply: opts.reply } : {}) });
    this.counters.published(ch.name);
  }

  /** Hands each valid message of `subject` to `handler`, one at a time. */
  subscribe<C extends SessionChannel | GlobalChannel>(
    subject: string,
    ch: C,
    handler: Handler<z.output<C['schema']>>,
    opts: SubscribeOptions,
  ): BusSubscription {
    return this.subs.consume(subject, opts, (m) => {
      const body = this.gate.json(ch, m);
      return body === undefined ? undefined : handler(body.value as z.output<C['schema']>, messageMeta(m));
    });
  }
}
