import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ActorHost, closeSession, openSession, type ActorContext } from '@va/actor';
import { Bus, type KV } from '@va/bus';
import { BUCKETS, channels, sessionId, subjects, type SessionId } from '@va/protocol';
import {
  ActorInstances,
  spawnNode,
  startNatsServer,
  waitFor,
  type ChildHandle,
  type NatsServerHandle,
} from '@va/testkit';

const probeHost = fileURLToPath(new URL('./fixtures/probe-host.ts', import.meta.url));

let nats: NatsServerHandle;
let client: Bus;
let leases: KV;

beforeAll(async () => {
  nats = await startNatsServer();
  client = await Bus.connect({ stage: 'test-client', servers: nats.url });
  leases = await client.kv(BUCKETS.leases);
});

afterAll(async () => {
  await client?.drain();
  await nats?.stop();
});

interface LogLine {
  msg: string;
  instanceId: string;
  sessionId?: string;
  reclaimed?: boolean;
}

/** Owner of every lease of a stage, read from KV (the source of truth for placement). */
async function owners(stage: string): Promise<Map<string, string | null>> {
  const result = new Map<string, string | null>();
  for await (const key of await leases.keys(`${stage}.>`)) {
    const e = await leases.get(key);
    if (e?.operation === 'PUT') result.set(key.slice(stage.length + 1), e.json<{ owner: string | null }>().owner);
  }
  return result;
}

function claims(host: ChildHandle): LogLine[] {
  return (host.jsonLines() as LogLine[]).filter((l) => l.msg === 'session claimed');
}

function spawnHost(stage: string, env: Record<string, string> = {}): ChildHandle {
  return spawnNode(probeHost, {
    name: `${stage}-host`,
    env: { NATS_URL: nats.url, PROBE_STAGE: stage, LOG_LEVEL: 'info', ...env },
  });
}

async function started(host: ChildHandle): Promise<string> {
  return (await host.waitForJson<LogLine>((l) => l.msg === 'actor host started', 20_000)).instanceId;
}

describe('session actors across processes', () => {
  it('claims each session once, re-claims a killed host’s sessions within 3 s, and hands over on SIGTERM', async () => {
    const stage = 'probe';
    const hosts = [spawnHost(stage), spawnHost(stage), spawnHost(stage)];
    try {
      const ids = await Promise.all(hosts.map(started));
      const sids = Array.from({ length: 30 }, (_, i) => sessionId(`sess-${i}`));
      const acks = await Promise.all(sids.map((sid) => openSession(client, sid, {}, { stages: [stage] })));
      expect(acks.map((a) => a.length)).toEqual(sids.map(() => 1));

      // Exactly once: one lease per session, and 30 claim events in all with no session twice.
      const placed = await owners(stage);
      expect([...placed.keys()].sort()).toEqual([...sids].sort());
      expect([...placed.values()].every((o) => o !== null && ids.includes(o))).toBe(true);
      await waitFor(() => hosts.reduce((n, h) => n + claims(h).length, 0) === 30);
      const claimed = hosts.flatMap(claims).map((c) => c.sessionId);
      expect(new Set(claimed).size).toBe(30);
      // The queue group spreads the load: nobody is left out.
      for (const id of ids) expect([...placed.values()].filter((o) => o === id).length).toBeGreaterThan(0);

      // kill -9 the first host: its sessions must be owned again, by the survivors, within 3 s.
      const [victim, second, third] = hosts as [ChildHandle, ChildHandle, ChildHandle];
      const victimSessions = [...placed].filter(([, o]) => o === ids[0]).map(([s]) => s);
      victim.kill('SIGKILL');
      const killedAt = Date.now();
      await waitFor(
        async () => {
          const now = await owners(stage);
          return victimSessions.every((s) => now.get(s) === ids[1] || now.get(s) === ids[2]);
        },
        { timeoutMs: 3000, intervalMs: 50, message: 'victim sessions re-claimed within 3 s' },
      );
      expect(Date.now() - killedAt).toBeLessThan(3000);
      expect((await victim.exited).signal).toBe('SIGKILL');
      // None twice: each of the victim's sessions was re-claimed by exactly one survivor, exactly once.
      await waitFor(() => [second, third].flatMap(claims).filter((c) => c.reclaimed).length >= victimSessions.length);
      const reclaims = [second, third]
        .flatMap(claims)
        .filter((c) => c.reclaimed)
        .map((c) => c.sessionId);
      expect(reclaims.sort()).toEqual([...victimSessions].sort());

      // A turn in flight on the second host, then SIGTERM: it finishes the turn, hands over, exits 0.
      const secondSessions = [...(await owners(stage))].filter(([, o]) => o === ids[1]).map(([s]) => s as SessionId);
      expect(secondSessions.length).toBeGreaterThan(0);
      const inFlight = secondSessions[0]!;
      const replies: string[] = [];
      client.subscribe(channels.replyFast, inFlight, (m) => void replies.push(m.delta));
      await client.nc.flush();
      client.publish(channels.turn, inFlight, { turnId: 'tf', kind: 'end', text: 'hi', eouProb: 1, speechEndMs: 0 });
      await second.waitForJson((l) => l.msg === 'session claimed', 1000); // the host is up and serving
      await new Promise((r) => setTimeout(r, 50)); // let the turn start before the signal
      const exit = await second.stop(10_000);
      expect(exit).toEqual({ code: 0, signal: null });
      expect(replies).toEqual([`answered by ${second.pid}`]);
      const final = await owners(stage);
      expect(secondSessions.every((s) => final.get(s) === ids[2])).toBe(true);
      expect([...final.values()].every((o) => o === ids[2])).toBe(true);
      const thirdClaims = claims(third).map((c) => c.sessionId);
      expect(new Set(thirdClaims).size).toBe(thirdClaims.length);
      expect(thirdClaims.length).toBe(30);
    } finally {
      await Promise.all(hosts.map((h) => h.stop()));
    }
  });

  it('an instance at capacity leaves the queue group so placement follows load', async () => {
    const stage = 'probe-cap';
    const small = spawnHost(stage, { VA_SESSION_CAPACITY: '2' });
    const large = spawnHost(stage);
    try {
      const [smallId, largeId] = await Promise.all([started(small), started(large)]);
      for (let i = 0; i < 12; i++) await openSession(client, sessionId(`cap-${i}`), {}, { stages: [stage] });
      const placed = [...(await owners(stage)).values()];
      expect(placed.filter((o) => o === smallId).length).toBeLessThanOrEqual(2);
      expect(placed.filter((o) => o === largeId).length).toBeGreaterThanOrEqual(10);
      expect(placed.filter((o) => o === null)).toEqual([]);

      // The stage registers as a NATS micro service; each instance lists what it owns.
      const listed = await client.nc.request(subjects.svcSessions(stage, smallId), '', { timeout: 2000 });
      expect(listed.json<{ sessions: string[] }>().sessions.length).toBe(placed.filter((o) => o === smallId).length);
      const info = await client.nc.request(
        `$SRV.INFO.${stage}.${(await client.nc.request(`$SRV.PING.${stage}`)).json<{ id: string }>().id}`,
      );
      expect(info.json<{ name: string }>().name).toBe(stage);

      // Closing sessions gives the small instance room again and removes their leases.
      const smallSessions = [...(await owners(stage))].filter(([, o]) => o === smallId).map(([s]) => s as SessionId);
      for (const s of smallSessions) closeSession(client, s);
      await waitFor(async () => {
        const now = await owners(stage);
        return smallSessions.every((s) => !now.has(s));
      });
    } finally {
      await Promise.all([small.stop(), large.stop()]);
    }
  });
});

describe('parked sessions', () => {
  it('a session opened while no instance of a stage has room is claimed when one comes up', async () => {
    const stage = 'probe-late';
    const sid = sessionId('late-1');
    expect(await openSession(client, sid, {}, { stages: [stage], timeoutMs: 200 })).toEqual([]);
    expect((await owners(stage)).get(sid)).toBeNull();
    const claimed: string[] = [];
    const host = new ActorHost({
      stage,
      bus: await Bus.connect({ stage, servers: nats.url }),
      createActor: () => ({}),
    });
    host.on('claimed', (e) => claimed.push(e.sessionId));
    await host.start();
    try {
      await waitFor(() => claimed.length === 1);
      expect(claimed).toEqual([sid]);
      expect((await owners(stage)).get(sid)).toBe(host.instanceId);
    } finally {
      await host.drain();
    }
  });
});

describe('turn cancellation', () => {
  it('fires a turn’s AbortSignal on control cancel for that turn only, and drops its stale data', async () => {
    const stage = 'probe-cancel';
    const contexts = new Map<string, ActorContext>();
    const stale: string[] = [];
    const host = new ActorHost({
      stage,
      bus: await Bus.connect({ stage, servers: nats.url }),
      createActor: (ctx) => {
        contexts.set(ctx.sessionId, ctx);
        ctx.subscribe(channels.replyDeep, (m) => void stale.push(m.turnId));
        return {};
      },
    });
    await host.start();
    try {
      const [s1, s2] = [sessionId('cancel-1'), sessionId('cancel-2')];
      await openSession(client, s1, {}, { stages: [stage] });
      await openSession(client, s2, {}, { stages: [stage] });
      const c1 = contexts.get(s1)!;
      const c2 = contexts.get(s2)!;
      const s1t1 = c1.turnSignal('t1');
      const s1t2 = c1.turnSignal('t2');
      const s2t1 = c2.turnSignal('t1');

      client.publish(channels.control, s1, { kind: 'cancel', turnId: 't1', reason: 'barge-in' });
      await waitFor(() => s1t1.aborted);
      expect(s1t2.aborted).toBe(false);
      expect(s2t1.aborted).toBe(false);
      // A signal asked for after the cancel is born aborted (the cancel can overtake the turn's first message).
      expect(c1.turnSignal('t1').aborted).toBe(true);
      expect(c1.isCancelled('t1')).toBe(true);

      // Data of the cancelled turn never reaches the actor; other turns' data does.
      client.publish(channels.replyDeep, s1, { turnId: 't1', seq: 5, delta: 'late', done: false });
      client.publish(channels.replyDeep, s1, { turnId: 't2', seq: 0, delta: 'fresh', done: false });
      await waitFor(() => stale.length === 1);
      expect(stale).toEqual(['t2']);

      // Closing the session aborts every signal of it.
      closeSession(client, s2);
      await waitFor(() => s2t1.aborted);
      expect(s1t2.aborted).toBe(false);
    } finally {
      await host.drain();
    }
  });
});

describe('a draining instance', () => {
  it('keeps beating while a turn in flight finishes: no peer takes the session before it is handed over', async () => {
    const instances = await ActorInstances.start();
    try {
      const events: string[] = [];
      let n = 0;
      const factory = (ctx: ActorContext) => {
        const me = ++n;
        events.push(`start ${me}`);
        // The first owner has a turn in flight for 1.5 s (3 leases of the test host): the drain waits for it.
        if (me === 1) void ctx.track(new Promise((r) => setTimeout(r, 1500)));
        return { stop: () => void events.push(`stop ${me}`) };
      };
      const first = await instances.add('drainer', factory);
      const sid = await instances.open('drain-1', {}, ['drainer']);
      const second = await instances.add('drainer', factory);
      const claimed = second.claims(sid);
      await first.stop();
      await claimed;
      expect(events, 'the successor starts only after the first owner stopped').toEqual([
        'start 1',
        'stop 1',
        'start 2',
      ]);
    } finally {
      await instances.stop();
    }
  }, 30_000);
});
