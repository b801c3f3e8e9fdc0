// node bench/dist/ctx-get.js [sessions] [turns] [turnGapMs]   — ctx.get round trip under load, alone.
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { openSession } from '@va/actor';
import { Bus } from '@va/bus';
import { channels, requests, sessionId, type SessionId } from '@va/protocol';
import { SPAN } from '@va/telemetry';
import { spawnNode, startNatsServer, startOtlpReceiver, waitFor } from '@va/testkit';
import { percentile, round } from './stats.js';

const STAGE = 'session-context';
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export interface CtxGetResult {
  /** Round trip at the requester (ms). */
  p50: number;
  p99: number;
  /** Time inside session-context per request (cache read, budget cut, reply), ms. */
  serviceP50: number;
  serviceP99: number;
  /** A bare NATS request/reply echo at the same pace on the same connections: the transport floor (ms). */
  floorP50: number;
  floorP99: number;
  count: number;
  sessions: number;
  turns: number;
  turnGapMs: number;
}

/** The history budgets the responders ask for: the fast opener's few messages, the deep answer's full context. */
const BUDGETS = [{ maxTokens: 200 }, { maxTokens: 3000, tools: true }] as const;

/**
 * ctx.get while `sessions` conversations of `turns` turns run at once against the real session-context service
 * (its own process, as deployed) on a real nats-server: every `turnGapMs` each session stores the user's words,
 * asks for history as both responders do (at once), then stores the played answer. 500 ms between turns is
 * ~10× a real conversation's pace. Summaries run in the background (extractive: no LLM is configured, so the
 * figures are session-context's own cost, not a model's). Time in the service comes from its `context.get`
 * spans; the round trip is measured here, next to a bare NATS request/reply at the same pace.
 */
export async function measureCtxGet(sessions = 50, turns = 40, turnGapMs = 500): Promise<CtxGetResult> {
  const nats = await startNatsServer();
  const otlp = await startOtlpReceiver();
  const service = spawnNode(join(ROOT, 'services', STAGE, 'dist', 'main.js'), {
    name: STAGE,
    env: {
      NATS_URL: nats.url,
      OTEL_EXPORTER_OTLP_ENDPOINT: otlp.endpoint,
      OTEL_BSP_SCHEDULE_DELAY: '200',
      OTEL_BSP_MAX_QUEUE_SIZE: '100000',
      VA_SESSION_CAPACITY: String(sessions + 1),
      LOG_LEVEL: 'info',
    },
  });
  const client = await Bus.connect({ stage: 'bench-ctx', servers: nats.url });
  // The floor: the same request/reply without session-context's work, to tell its cost from the transport's.
  const echoBus = await Bus.connect({ stage: 'bench-echo', servers: nats.url });
  const echo = echoBus.nc.subscribe('bench.ctx.echo', {
    callback: (_err, m) => {
      m.respond(m.data);
    },
  });
  try {
    await service.waitForJson((l) => l.msg === 'actor host started', 60_000);
    const sids: SessionId[] = [];
    for (let s = 0; s < sessions; s++) {
      const sid = sessionId(`bench-ctx-${s}`);
      await openSession(client, sid, {}, { stages: [STAGE] });
      sids.push(sid);
    }
    await client.nc.flush();
    // ctx.get is served once the service has finished starting: ask until it answers.
    await waitFor(
      () =>
        client
          .request(requests.ctxGet, { sessionId: sids[0]!, maxTokens: 10 }, { timeoutMs: 500 })
          .then(() => true)
          .catch(() => false),
      { timeoutMs: 30_000, message: 'session-context answering ctx.get' },
    );
    const warmup = otlp.spans().length;
    const samples: number[] = [];
    const floor: number[] = [];
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
          // The bare request halfway through the pause, so it meets the same idle machine the ctx.get did.
          await sleep(turnGapMs / 2 - (performance.now() - turnStarted));
          const echoStarted = performance.now();
          await client.nc.request('bench.ctx.echo', 'x', { timeout: 5000 });
          floor.push(performance.now() - echoStarted);
          await sleep(turnGapMs - (performance.now() - turnStarted));
        }
      }),
    );
    // Every request's span, exported in batches after it ended.
    const servedSpans = () =>
      otlp
        .spans()
        .slice(warmup)
        .filter((sp) => sp.name === SPAN.contextGet);
    await waitFor(() => servedSpans().length >= samples.length, { timeoutMs: 15_000, message: 'context.get spans' });
    const served = servedSpans().map((sp) => sp.durationMs);
    return {
      p50: percentile(samples, 50),
      p99: percentile(samples, 99),
      serviceP50: percentile(served, 50),
      serviceP99: percentile(served, 99),
      floorP50: percentile(floor, 50),
      floorP99: percentile(floor, 99),
      count: samples.length,
      sessions,
      turns,
      turnGapMs,
    };
  } finally {
    echo.unsubscribe();
    await service.stop(10_000);
    await client.drain();
    await echoBus.drain();
    await otlp.stop();
    await nats.stop();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [sessions = 50, turns = 40, gap = 500] = process.argv.slice(2).map(Number);
  const r = await measureCtxGet(sessions, turns, gap);
  console.log(
    `ctx.get (${r.sessions} sessions × ${r.turns} turns, a turn every ${r.turnGapMs} ms each, ${r.count} requests): ` +
      `in session-context p50 ${round(r.serviceP50, 3)} ms, p99 ${round(r.serviceP99, 3)} ms; ` +
      `round trip p50 ${round(r.p50, 2)} ms, p99 ${round(r.p99, 2)} ms (bare NATS echo p50 ${round(r.floorP50, 2)}, p99 ${round(r.floorP99, 2)})`,
  );
}
