import type { ActorContext, ActorFactory, SessionActor } from '@va/actor';
import { EMPTY_DOC, HISTORY_STATE, parseDoc, type HistoryDoc } from '@va/context';
import { channels } from '@va/protocol';
import { STAGE, type ContextOptions } from './options.js';
import { SessionHistory } from './session-history.js';
import type { Summarizer } from './summarizer.js';

export { HISTORY_STATE };

export interface ContextActorOptions extends ContextOptions {
  summarizer: Summarizer;
  stage?: string;
}

/**
 * Keeps one session's history in KV (session-history.ts: what is recorded, when it is written and summarized).
 * This actor is the only writer; every instance serves ctx.get from its cache of what was written (cache.ts). The
 * state bucket is file-backed JetStream (nats.js KV's default storage, which bus.kv() keeps), so the history
 * outlives restarts of this service and of nats-server; the instance that re-claims the session reads it back.
 */
export function contextActor(opts: ContextActorOptions): ActorFactory {
  const stage = opts.stage ?? STAGE;
  return async (ctx: ActorContext): Promise<SessionActor> => {
    // A re-claimed session continues from what the previous owner stored (either stored format).
    const stored = await ctx.state.get<unknown>(HISTORY_STATE);
    const doc: HistoryDoc = (stored === undefined ? undefined : parseDoc(stored)) ?? EMPTY_DOC;
    if (stored !== undefined && doc === EMPTY_DOC) ctx.log.warn('unreadable history in KV: starting afresh');
    const history = new SessionHistory(doc, opts, {
      sessionId: ctx.sessionId,
      stage,
      signal: ctx.signal,
      put: (d) => ctx.state.put(HISTORY_STATE, d),
      track: (work) => ctx.track(work),
      warn: (fields, msg) => ctx.log.warn(fields, msg),
      error: (fields, msg) => ctx.log.error(fields, msg),
    });
    ctx.subscribe(channels.turn, (turn, meta) => history.userTurn(turn, meta.context));
    ctx.subscribe(channels.tool, (exchange, meta) => history.toolExchange(exchange, meta.context));
    ctx.subscribe(channels.playout, (p, meta) => history.played(p, meta.context));

    // A reclaimed session may have been left over the threshold by an owner that died mid-summary.
    history.maybeSummarize();
    // A new session's (empty) document is written at once, so every instance's cache has it before the first
    // turn asks: the first ctx.get is a cache hit, not a KV read.
    if (stored === undefined) history.persist();

    return { stop: () => history.settled() };
  };
}
