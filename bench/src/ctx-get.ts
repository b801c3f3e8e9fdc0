// node bench/dist/ctx-get.js [sessions] [turns] [turnGapMs]   — ctx.get round trip under load, alone.
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { ActorHost, openSession } from '@va/actor';
import { Bus } from '@va/bus';
import { channels, requests, sessionId, type SessionId } from '@va/protocol';
import {
  CONTEXT_DEFAULTS,
  contextActor,
  extractiveSummarizer,
  serveContext,
  STAGE,
} from '@va/service-session-context/lib';
import { startNatsServer } from '@va/testkit';
import { percentile, round } from './stats.js';

export interface CtxGetResult {
  p50: number;
  p99: number;
  count: number;
  sessions: number;
  turns: number;
  turnGapMs: number;
}

/** The history budgets the responders ask for: the fast opener's few messages, the deep answer's full context. */
const BUDGETS = [{ maxTokens: 200 }, { maxTokens: 3000, tools: true }] as const;

/**
 * ctx.get round trip (request → reply on the client, ms) while `sessions` conversations of `turns` turns run at
 * once against one in-process session-context (its actor host + ctx.get server) on a real nats-server: every
 * `turnGapMs` each session stores the user's words, asks for history as both responders do (at once), then
 * stores the played answer. 500 ms between turns is ~10× a real conversation's pace. Summaries run in the
 * background (extractive, so the figure is session-context's own cost, not a model's).
 */
export async function measureCtxGet(sessions = 50, turns = 40, turnGapMs = 500): Promise<CtxGetResult> {
  const nats = await startNatsServer();
  const serviceBus = await Bus.connect({ stage: STAGE, servers: nats.url });
  const client = await Bus.connect({ stage: 'bench-ctx', servers: nats.url });
  const host = new ActorHost({
    stage: STAGE,
    bus: serviceBus,
    capacity: sessions + 1,
    createActor: contextActor({ ...CONTEXT_DEFAULTS, summarizer: extractiveSummarizer(CONTEXT_DEFAULTS) }),
  });
  await host.start();
  const server = await serveContext(serviceBus);
  try {
    const sids: SessionId[] = [];
    for (let s = 0; s < sessions; s++) {
      const sid = sessionId(`bench-ctx-${s}`);
      await openSession(client, sid, {}, { stages: [STAGE] });
      sids.push(sid);
    }
    await client.nc.flush();
    const samples: number[] = [];
    await Promise.all(
      sids.map(async (sid, s) => {
        // Sessions start spread over one gap, as real conversations are not in lockstep.
        await sleep((turnGapMs * s) / sessions);
        for (let n = 1; n <= turns; n++) {
          const turnStarted = performance.now();
          const turnId = `t${n}`;
          client.publish(channels.turn, sid, {
            turnId,
            kind: 'end',
            text: `question ${n}: could you tell me more about topic number ${n} and what it means for me`,
            eouProb: 0.9,
            speechEndMs: n * 4000,
          });
          await Promise.all(
            BUDGETS.map(async (budget) => {
              const started = performance.now();
              await client.request(
                requests.ctxGet,
                { sessionId: sid, beforeTurnId: turnId, ...budget },
                { timeoutMs: 5000 },
              );
              samples.push(performance.now() - started);
            }),
          );
          client.publish(channels.playout, sid, {
            turnId,
            playedMs: 3000,
            spokenText: `Sure. Topic ${n} is about several things; here is the short version of what matters most.`,
            done: true,
            interrupted: false,
          });
          await sleep(turnGapMs - (performance.now() - turnStarted));
        }
      }),
    );
    return {
      p50: percentile(samples, 50),
      p99: percentile(samples, 99),
      count: samples.length,
      sessions,
      turns,
      turnGapMs,
    };
  } finally {
    await host.drain();
    await server.stop();
    await serviceBus.drain();
    await client.drain();
    await nats.stop();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [sessions = 50, turns = 40, gap = 500] = process.argv.slice(2).map(Number);
  const r = await measureCtxGet(sessions, turns, gap);
  console.log(
    `ctx.get round trip (${r.sessions} sessions × ${r.turns} turns, a turn every ${r.turnGapMs} ms each): p50 ${round(r.p50, 2)} ms, p99 ${round(r.p99, 2)} ms over ${r.count}`,
  );
}
