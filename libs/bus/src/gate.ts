import type { Msg } from '@nats-io/transport-node';
import { decodeAudioFrame, isInbox, parseSessionSubject, type AudioFrame } from '@va/protocol';
import type { z } from 'zod';
import type { BusCounters } from './counters.js';
import type { ErrorReporter } from './errors.js';
import { serverRelay } from './origin.js';
import { extractTrace } from './trace-headers.js';
import { decodeJson, TURN_HEADER, type MessageMeta } from './types.js';

/**
 * What stands between the server and a handler: a message nats-server relayed on someone's behalf (a stage's
 * forgery through JetStream, see `serverRelay`) and a body that fails its schema are dropped, counted and
 * reported — handlers never see them. What passes is counted as received.
 */
export class MessageGate {
  constructor(
    private readonly errors: ErrorReporter,
    private readonly counters: BusCounters,
  ) {}

  /** Parses and validates; on failure drops the message, counts it and reports it. */
  json<S extends z.ZodType>(ch: { name: string; schema: S }, m: Msg): { value: z.output<S> } | undefined {
    const relay = serverRelay(m);
    if (relay !== undefined) {
      // Not published by the one user allowed to: a stage's forgery through JetStream. Never answered.
      this.errors.rejectForged(m.subject, ch.name, relay);
      return undefined;
    }
    let raw: unknown;
    try {
      raw = decodeJson(m.data);
    } catch {
      this.errors.reject(m.subject, ch.name, 'bad-message', `${ch.name}: body is not JSON`, m.reply);
      return undefined;
    }
    const result = ch.schema.safeParse(raw);
    if (!result.success) {
      const issues = result.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
      this.errors.reject(m.subject, ch.name, 'bad-message', `${ch.name}: ${issues}`, m.reply);
      return undefined;
    }
    this.counters.received(ch.name);
    return { value: result.data };
  }

  /** A request to answer, as `json`, and only when it asks for its answer in an inbox. */
  request<S extends z.ZodType>(
    ch: { name: string; schema: S },
    m: Msg,
  ): { value: z.output<S>; reply: string } | undefined {
    const body = this.json(ch, m);
    if (body === undefined || !m.reply) return undefined;
    if (!isInbox(m.reply)) {
      // A reply to another subject would publish our answer where the asker may not (e.g. a session's
      // reply.deep): answers go only to inboxes, which only their owner can read.
      this.errors.reject(
        m.subject,
        ch.name,
        'forged',
        `${ch.name}: reply subject ${m.reply.slice(0, 64)} is not an inbox`,
      );
      return undefined;
    }
    return { value: body.value, reply: m.reply };
  }

  /**
   * An audio frame, decoded, unless it was relayed (`relayed`: what its headers say, read once per header block
   * by a TraceReader) or carries a reply subject, or cannot be decoded.
   */
  frame(channel: string, m: Msg, relayed: string | undefined): AudioFrame | undefined {
    const relay = m.reply ? (serverRelay(m) ?? 'a reply subject on an audio frame') : relayed;
    if (relay !== undefined) {
      this.errors.rejectForged(m.subject, channel, relay);
      return undefined;
    }
    let frame: AudioFrame;
    try {
      frame = decodeAudioFrame(m.data);
    } catch (err) {
      this.errors.reject(m.subject, channel, 'bad-audio', err instanceof Error ? err.message : String(err));
      return undefined;
    }
    this.counters.received(channel);
    return frame;
  }
}

/** What a handler learns about a received JSON message besides its body. */
export function messageMeta(m: Msg): MessageMeta {
  const parsed = parseSessionSubject(m.subject);
  const turnId = m.headers?.has(TURN_HEADER) ? m.headers.get(TURN_HEADER) : undefined;
  return {
    subject: m.subject,
    ...(parsed ? { sessionId: parsed.sessionId } : {}),
    ...(turnId ? { turnId } : {}),
    context: extractTrace(m.headers),
    ...(m.headers ? { headers: m.headers } : {}),
    ...(m.reply ? { reply: m.reply } : {}),
  };
}
