import type { ActorContext } from '@va/actor';
import { buildContext, HistoryReplica } from '@va/context';
import type { ChatMessage, Turn } from '@va/protocol';

/**
 * One history replica per bus connection (per process), shared by the responder's session actors: it keeps the
 * sessions this process holds, loaded when the session is claimed and kept current by a KV watch.
 */
class HistoryReplicas {
  private readonly byBus = new WeakMap<ActorContext['bus'], { replica: Promise<HistoryReplica>; held: Set<string> }>();

  /** The process's replica on this connection, opened on first use. */
  open(bus: ActorContext['bus']): { replica: Promise<HistoryReplica>; held: Set<string> } {
    let entry = this.byBus.get(bus);
    if (!entry) {
      const held = new Set<string>();
      const replica = HistoryReplica.open(bus, { log: bus.log, keep: (sid) => held.has(sid) });
      // A failed open is retried by the next session rather than remembered.
      replica.catch(() => this.byBus.delete(bus));
      entry = { replica, held };
      this.byBus.set(bus, entry);
    }
    return entry;
  }

  hold(ctx: ActorContext): Promise<HistoryReplica> {
    const { held, replica } = this.open(ctx.bus);
    held.add(ctx.sessionId);
    // Loaded now, at the claim, not when the first turn ends.
    void replica.then((r) => r.read(ctx.sessionId)).catch(() => undefined);
    ctx.signal.addEventListener(
      'abort',
      () => {
        held.delete(ctx.sessionId);
        void replica.then((r) => r.forget(ctx.sessionId)).catch(() => undefined);
      },
      { once: true },
    );
    return replica;
  }
}
const histories = new HistoryReplicas();

/**
 * Opens the responder's history replica on a service's connection before it claims sessions (runService's
 * `prepare`): its watch is part of the idle process, and the first turn does not wait for it.
 */
export async function prepareResponder(bus: ActorContext['bus']): Promise<void> {
  await histories.open(bus).replica;
}

/** The conversation before a turn, as chat messages (within a token budget), and whether it came from memory. */
export type HistoryReader = (turn: Turn) => Promise<{ messages: ChatMessage[]; hit: boolean }>;

/** This session's history, kept current in memory by the process's replica: nothing to fetch when a turn ends. */
export function sessionHistory(ctx: ActorContext, opts: { maxTokens: number; tools: boolean }): HistoryReader {
  const replica = histories.hold(ctx);
  return async (turn) => {
    try {
      const { doc, hit } = await (await replica).read(ctx.sessionId);
      const reply = buildContext(doc, {
        maxTokens: opts.maxTokens,
        beforeTurnId: turn.turnId,
        ...(opts.tools ? { tools: true } : {}),
      });
      const summary: ChatMessage[] = reply.summary ? [{ role: 'system', content: `Earlier: ${reply.summary}` }] : [];
      return { messages: [...summary, ...reply.messages], hit };
    } catch (err) {
      ctx.log.warn({ err: String(err) }, 'no history, answering without');
      return { messages: [], hit: false };
    }
  };
}
