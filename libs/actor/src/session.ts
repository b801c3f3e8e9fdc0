import { createInbox } from '@nats-io/transport-node';
import { channels, SessionOpenAck, type SessionConfig, type SessionId } from '@va/protocol';
import type { Bus } from '@va/bus';

export interface OpenSessionOptions {
  /** Stages whose claim to wait for; resolves early when all have acknowledged. */
  stages: readonly string[];
  timeoutMs?: number;
}

/**
 * Opens a session on every stage (one instance per stage claims it) and collects the claims.
 * Resolves with the acknowledgements that arrived; a stage missing from them had no instance with room in time
 * (its lease is parked and will be claimed when one has).
 */
export async function openSession(
  bus: Bus,
  sessionId: SessionId,
  config: Partial<SessionConfig>,
  opts: OpenSessionOptions,
): Promise<SessionOpenAck[]> {
  const inbox = createInbox();
  const acks = new Map<string, SessionOpenAck>();
  const sub = bus.nc.subscribe(inbox);
  const timer = setTimeout(() => sub.unsubscribe(), opts.timeoutMs ?? 5000);
  const collected = (async () => {
    for await (const m of sub) {
      const ack = SessionOpenAck.safeParse(m.json());
      if (!ack.success || ack.data.sessionId !== sessionId) continue;
      acks.set(ack.data.stage, ack.data);
      if (opts.stages.every((s) => acks.has(s))) break;
    }
  })();
  bus.publishGlobal(channels.sessionOpen, { sessionId, config }, { reply: inbox });
  await collected;
  clearTimeout(timer);
  sub.unsubscribe();
  return [...acks.values()];
}

export function closeSession(bus: Bus, sessionId: SessionId, reason = 'closed'): void {
  bus.publishGlobal(channels.sessionClose, { sessionId, reason });
}
