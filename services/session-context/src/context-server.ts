import type { Bus, BusSubscription } from '@va/bus';
import { requests } from '@va/protocol';
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
  } = {},
): Promise<ContextServer> {
  const stage = opts.stage ?? STAGE;
  const cache = await HistoryReplica.open(bus, { stage, ...(opts.log ? { log: opts.log } : {}) });
  const sub: BusSubscription = bus.serve(
    requests.ctxGet,
    (req, meta) =>
      withStageSpan(SPAN.contextGet, { parent: meta.context, sessionId: req.sessionId, stage }, async (span) => {
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
      }),
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
