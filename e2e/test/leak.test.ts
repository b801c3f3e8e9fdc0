import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeSession, openSession } from '@va/actor';
import { dither } from '@va/audio';
import { Bus } from '@va/bus';
import { startPipeline, type Pipeline } from '@va/e2e';
import { sessionId, STAGES, type SessionId } from '@va/protocol';
import { waitFor } from '@va/testkit';

/*
 * Leaks (issue 10, item 5): open and close N sessions against the six real stage processes (real providers:
 * pocketsphinx, Silero, flite, the local LLM servers), each fed some audio, and check that every process returns
 * to its idle NATS subscriptions and active handles/timers — read from its health endpoint's readiness details
 * (`subscriptions`, `activeResources`, `heapUsedBytes`).
 */

const N = Number(process.env.LEAK_SESSIONS ?? 30);
const stages = STAGES.filter((s) => s !== 'media-gateway');
/** Handles that come and go on their own (a heartbeat's KV request, an OTLP export's socket): allowed over idle. */
const RESOURCE_SLACK = 2;

interface Details {
  ready: boolean;
  sessions: number;
  heapUsedBytes: number;
  subscriptions: number;
  activeResources: number;
  /** OS threads of the process (/proc): a worker thread (a recogniser's decoder) is not an active resource. */
  threads: number;
}

async function threadsOf(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  return Number(/^Threads:\s+(\d+)/m.exec(status)?.[1] ?? -1);
}

let pipeline: Pipeline;
let client: Bus;
const urls = new Map<string, string>();

beforeAll(async () => {
  pipeline = await startPipeline({
    llmTtftMs: 20,
    llmTokensPerSecond: 200,
    env: { VA_HEALTH_PORT: '0', VA_HEALTH_HOST: '127.0.0.1' },
  });
  for (const s of pipeline.stages) {
    const line = await s.child.waitForJson<{ url: string }>((l) => l.msg === 'health endpoint ready', 30_000);
    urls.set(s.stage, line.url);
  }
  client = await Bus.connect({ stage: 'leak-test', servers: pipeline.nats.url });
}, 120_000);

afterAll(async () => {
  await client?.close();
  await pipeline?.stop();
});

async function details(stage: string): Promise<Details> {
  const res = await fetch(`${urls.get(stage)}/readyz`);
  const pid = pipeline.stages.find((s) => s.stage === stage)!.pid;
  return { ...((await res.json()) as Omit<Details, 'threads'>), threads: await threadsOf(pid) };
}

async function all(): Promise<Map<string, Details>> {
  return new Map(await Promise.all(stages.map(async (s) => [s, await details(s)] as const)));
}

/** Idle figures: subscriptions as they are, handles at their lowest over a few samples (they flicker). */
async function idle(): Promise<Map<string, Details>> {
  const samples: Map<string, Details>[] = [];
  for (let i = 0; i < 5; i++) {
    samples.push(await all());
    await new Promise((r) => setTimeout(r, 150));
  }
  return new Map(
    stages.map((s) => {
      const of = samples.map((m) => m.get(s)!);
      return [
        s,
        {
          ...of[of.length - 1]!,
          activeResources: Math.min(...of.map((d) => d.activeResources)),
          threads: Math.max(...of.map((d) => d.threads)),
        },
      ];
    }),
  );
}

function feed(sid: SessionId): void {
  for (let seq = 0; seq < 25; seq++) {
    client.publishAudio('in', sid, {
      samples: dither(new Int16Array(320), 4, seq + 1),
      sampleRate: 16000,
      seq,
      tsMs: seq * 20,
    });
  }
}

describe('leaks across sessions', () => {
  it(`every stage returns to its idle subscriptions and handles after ${N} sessions open and close`, async () => {
    // Let start-up work (spare decoders, first exports) settle before taking the idle figures.
    await new Promise((r) => setTimeout(r, 1500));
    const before = await idle();
    for (const [s, d] of before) {
      expect(d.subscriptions, s).toBeGreaterThan(0);
      expect(d.activeResources, s).toBeGreaterThan(0);
      expect(d.sessions, s).toBe(0);
    }

    const ids = Array.from({ length: N }, (_, i) => sessionId(`leak-${i}`));
    for (let i = 0; i < ids.length; i += 5) {
      await Promise.all(
        ids.slice(i, i + 5).map(async (sid) => {
          const acks = await openSession(client, sid, {}, { stages, timeoutMs: 30_000 });
          expect(acks.length).toBe(stages.length);
          feed(sid);
        }),
      );
    }
    await client.nc.flush();
    const open = await all();
    for (const [s, d] of open) {
      expect(d.sessions, s).toBe(N);
      // At least the control channel of each session: the figure really follows the sessions.
      expect(d.subscriptions, s).toBeGreaterThanOrEqual(before.get(s)!.subscriptions + N);
    }

    for (const sid of ids) closeSession(client, sid);
    await client.nc.flush();
    let after = new Map<string, Details>();
    try {
      await waitFor(
        async () => {
          after = await all();
          return stages.every((s) => {
            const a = after.get(s)!;
            const b = before.get(s)!;
            return (
              a.sessions === 0 &&
              a.subscriptions === b.subscriptions &&
              a.activeResources <= b.activeResources + RESOURCE_SLACK &&
              a.threads <= b.threads
            );
          });
        },
        { timeoutMs: 30_000, intervalMs: 250 },
      );
    } finally {
      const mb = (b: number) => (b / 1e6).toFixed(1);
      console.log(
        [
          `${N} sessions opened and closed; idle → open → closed`,
          `stage            subscriptions       activeResources     threads             heapUsed MB`,
          ...stages.map((s) => {
            const [b, o, a] = [before.get(s)!, open.get(s)!, after.get(s)];
            return (
              `${s.padEnd(16)} ${`${b.subscriptions} → ${o.subscriptions} → ${a?.subscriptions}`.padEnd(19)} ` +
              `${`${b.activeResources} → ${o.activeResources} → ${a?.activeResources}`.padEnd(19)} ` +
              `${`${b.threads} → ${o.threads} → ${a?.threads}`.padEnd(19)} ` +
              `${mb(b.heapUsedBytes)} → ${mb(o.heapUsedBytes)} → ${a ? mb(a.heapUsedBytes) : '?'}`
            );
          }),
        ].join('\n'),
      );
    }
  }, 180_000);
});
