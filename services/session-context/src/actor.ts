import type { ActorContext, SessionActor } from '@va/actor';
import { channels } from '@va/protocol';
import { upsert, type HistoryEntry } from './history.js';

export const HISTORY_STATE = 'history';

/**
 * Keeps one session's history in KV: the user's turn as the turn detector closed it, and the assistant's
 * turn as the gateway reports it was really played (opener + answer, cut where the user barged in).
 * This actor is the only writer; any instance can read the history to answer ctx.get.
 */
export async function createContextActor(ctx: ActorContext): Promise<SessionActor> {
  // A re-claimed session continues from what the previous owner stored.
  let history: HistoryEntry[] = (await ctx.state.get<HistoryEntry[]>(HISTORY_STATE)) ?? [];
  let writing = Promise.resolve();

  const save = (entry: HistoryEntry) => {
    history = upsert(history, entry);
    const snapshot = history;
    // Writes are chained so KV always ends with the latest snapshot.
    writing = writing
      .then(() => ctx.state.put(HISTORY_STATE, snapshot))
      .catch((err: unknown) => ctx.log.error({ err }, 'history write failed'));
    void ctx.track(writing);
  };

  ctx.subscribe(channels.turn, (turn) => {
    if (turn.kind !== 'end' || turn.text.trim() === '') return;
    save({ turnId: turn.turnId, role: 'user', content: turn.text });
  });

  ctx.subscribe(channels.playout, (p) => {
    if (!p.done) return;
    save({
      turnId: p.turnId,
      role: 'assistant',
      content: p.spokenText,
      ...(p.interrupted ? { interrupted: true } : {}),
    });
  });

  return {
    stop: async () => {
      await writing;
    },
  };
}
