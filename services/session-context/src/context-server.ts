import { RequestRefusedError, type Bus, type BusSubscription, type KV } from '@va/bus';
import { inboxOwner, leaseKey, requests, type SessionId } from '@va/protocol';
import { ATTR, METRIC, recordLatency, SPAN, withStageSpan, type Logger } from '@va/telemetry';
import { buildContext, HistoryReplica, replyTokens } from '@va/context';
import { STAGE } from './options.js';

export interface ContextServer {
  cache: HistoryReplica;
  stop(): Promise<void>;
}

/**
 * Answers ctx.get on this instance (one queue group: any instance answers any session) from the in-memory
 * cache, cut to the request's token budget.
 */
export async function serveContext(
  bus: Bus,
  opts: {
    stage?: string;
    log?: Logger;
    /** Called with each request's time in this service (ms), without transport: what benchmarks report. */
    onServed?: (ms: number) => void;
    /**
     * The lease bucket: when given, a session's history is answered only to the gateway (which opened it and
     * carries its audio) or to a stage holding a lease on it. The asker is the owner of the reply inbox: only
     * that user can read the answer.
     */
    leases?: KV;
  } = {},
): Promise<ContextServer> {
  const stage = opts.stage ?? STAGE;
  const cache = await HistoryReplica.open(bus, { stage, ...(opts.log ? { log: opts.log } : {}) });
  const sub: BusSubscription = bus.serve(
    requests.ctxGet,
    async (req, meta) => {
      if (opts.leases) await mayRead(opts.leases, meta.reply ?? '', req.sessionId);
      return withStageSpan(SPAN.contextGet, { parent: meta.context, sessionId: req.sessionId, stage }, async (span) => {
        const started = performance.now();
        const { doc, hit } = await cache.read(req.sessionId);
        const reply = buildContext(doc, req);
        if (req.beforeTurnId) span.setAttribute(ATTR.turnId, req.beforeTurnId);
        span.setAttributes({
          [ATTR.messages]: reply.messages.length,
          [ATTR.contextTokens]: replyTokens(reply),
          [ATTR.contextBudget]: req.maxTokens,
          [ATTR.hasSummary]: reply.summary !== null,
          [ATTR.cacheHit]: hit,
        });
        const ms = performance.now() - started;
        recordLatency(METRIC.contextGet, ms, { span, attributes: { [ATTR.stage]: stage, [ATTR.cacheHit]: hit } });
        opts.onServed?.(ms);
        return reply;
      });
    },
    { queue: stage },
  );
  // Registered with the server before this returns: a request sent right after finds us.
  await bus.nc.flush();
  return {
    cache,
    stop: async () => {
      sub.unsubscribe();
      cache.stop();
      await cache.closed;
    },
  };
}

/** Throws RequestRefusedError unless the asker (the owner of `reply`) may read the session's history. */
async function mayRead(leases: KV, reply: string, sessionId: SessionId): Promise<void> {
  const asker = inboxOwner(reply);
  if (asker === 'media-gateway') return;
  if (asker === undefined) throw new RequestRefusedError(`ctx.get for ${sessionId}: the reply is not an inbox`);
  const lease = await leases.get(leaseKey(asker, sessionId)).catch(() => null);
  if (!lease || lease.operation !== 'PUT' || lease.length === 0) {
    throw new RequestRefusedError(`ctx.get for ${sessionId}: ${asker} holds no lease on it`);
  }
}
