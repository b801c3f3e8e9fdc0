import { runService, stateKey } from '@va/actor';
import { BUCKETS, requests } from '@va/protocol';
import { ATTR, SPAN, withStageSpan } from '@va/telemetry';
import { createContextActor, HISTORY_STATE } from './actor.js';
import { selectMessages, type HistoryEntry } from './history.js';

const STAGE = 'session-context';

const { bus } = await runService({ stage: STAGE, createActor: createContextActor });

// ctx.get is answered by any instance (queue group): the history is read from KV, not from the owner's memory.
const state = await bus.kv(BUCKETS.state);
bus.serve(
  requests.ctxGet,
  (req, meta) =>
    withStageSpan(SPAN.contextGet, { parent: meta.context, sessionId: req.sessionId, stage: STAGE }, async (span) => {
      const entry = await state.get(stateKey(STAGE, req.sessionId, HISTORY_STATE));
      const history = entry?.operation === 'PUT' ? entry.json<HistoryEntry[]>() : [];
      const messages = selectMessages(history, req.maxTokens, req.beforeTurnId);
      if (req.beforeTurnId) span.setAttribute(ATTR.turnId, req.beforeTurnId);
      span.setAttribute(ATTR.messages, messages.length);
      return { messages, summary: null };
    }),
  { queue: STAGE },
);
