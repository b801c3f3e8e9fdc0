import type { Msg, MsgHdrs } from '@nats-io/transport-node';

/**
 * Headers nats-server sets on a message it hands over on someone's behalf: a direct get's answer, a republished
 * stream message. A stage's own publish never carries them, and whoever stored the message cannot remove them.
 */
const SERVER_SET_HEADERS = ['Nats-Stream', 'Nats-Subject', 'Nats-Sequence', 'Nats-Time-Stamp', 'Nats-Last-Sequence'];

/**
 * Why a message on a product subject was not published there by a client, or undefined when it was.
 *
 * Publish permissions say which user may publish a subject, but nats-server 2.9 also delivers messages there for
 * others: a push consumer's `deliver_subject`, a pull request's or a direct get's reply subject, a stream's
 * republish — none checked against the requester's publish permissions. So any stage could store a payload
 * under a key it may write and have the server deliver it as another stage's reply. Every such delivery is
 * marked: a `$JS.` reply subject (JetStream deliveries carry their ack subject), a status line (heartbeats, flow
 * control), or a header only the server sets. A message with none of them was published by a client, and only
 * the one user allowed to publish the subject can do that.
 */
export function serverRelay(m: Pick<Msg, 'reply' | 'headers'>): string | undefined {
  if (m.reply?.startsWith('$JS.')) return 'delivered by a JetStream consumer';
  return relayedHeaders(m.headers);
}

/** The header part of {@link serverRelay}. */
export function relayedHeaders(h: MsgHdrs | undefined): string | undefined {
  if (!h) return undefined;
  if (h.code !== 0 || h.hasError) return `a server status message (${h.code})`;
  for (const k of SERVER_SET_HEADERS) if (h.has(k)) return `relayed from a JetStream stream (${k})`;
  return undefined;
}
