import type { MsgHdrs } from '@nats-io/transport-node';
import type { Context } from '@opentelemetry/api';
import {
  TURN_HEADER as PROTOCOL_TURN_HEADER,
  type ErrorEvent,
  type RequestChannel,
  type SessionId,
  type SessionRequestChannel,
} from '@va/protocol';
import type { z } from 'zod';

/** What a handler learns about a message besides its validated body. */
export interface MessageMeta {
  subject: string;
  /** The session of a per-session subject. */
  sessionId?: SessionId;
  /** The turn a message belongs to (`va-turn` header), so stale data can be dropped unparsed. */
  turnId?: string;
  /** Trace context carried in the headers: make the stage span a child of this. */
  context: Context;
  headers?: MsgHdrs;
  /** Reply inbox, when the sender asked for answers (e.g. session.open acks). */
  reply?: string;
}

export type Handler<T> = (msg: T, meta: MessageMeta) => void | Promise<void>;

/** Answers one request: takes the validated request, returns the reply (checked against the channel's schema). */
export type RequestHandler<C extends RequestChannel | SessionRequestChannel> = (
  req: z.output<C['schema']>,
  meta: MessageMeta,
) => Promise<z.input<C['reply']>> | z.input<C['reply']>;

export interface RequestOptions {
  timeoutMs?: number;
  context?: Context;
}

export interface BusSubscription {
  unsubscribe(): void;
  /** Resolves when the subscription has ended and its last handler call has returned. */
  readonly closed: Promise<void>;
}

export interface PublishOptions {
  /** Trace context to carry; default the active one. */
  context?: Context;
  /** Sets `va-turn`; taken from the message's `turnId` when it has one. */
  turnId?: string;
  headers?: Record<string, string>;
}

export interface SubscribeOptions {
  /** NATS queue group: one member of the group gets each message. */
  queue?: string;
}

export class BusRequestError extends Error {
  override readonly name = 'BusRequestError';
  constructor(
    message: string,
    readonly event?: ErrorEvent,
  ) {
    super(message);
  }
}

/** Thrown by a request handler that will not answer this asker: the asker gets a `forbidden` error. */
export class RequestRefusedError extends Error {
  override readonly name = 'RequestRefusedError';
}

export const TURN_HEADER = PROTOCOL_TURN_HEADER;

export type AudioDirection = 'in' | 'out';

/** Counts of this connection, for tests and health endpoints (the same figures go to OTel metrics). */
export interface BusStats {
  published: number;
  received: number;
  rejected: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A message body as it goes on the wire. */
export function encodeJson(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

/** A message body read back (throws when it is not JSON). */
export function decodeJson(data: Uint8Array): unknown {
  return JSON.parse(decoder.decode(data));
}
