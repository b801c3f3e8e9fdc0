import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '@va/bus';
import { BUCKETS, channels, type SessionId } from '@va/protocol';
import { createLogger } from '@va/telemetry';
import { ActorInstances, waitFor } from '@va/testkit';
import { Admission } from '../src/admission.js';
import { LiveKitDispatcher } from '../src/livekit/dispatch.js';
import { sessionIdFor, type RoomEvents } from '../src/livekit/room.js';
import { startDispatchServer } from '../src/livekit/dispatch-server.js';
import { RoomLeases, roomLeaseKey } from '../src/livekit/room-leases.js';
import { busSessionFactory } from '../src/livekit/session.js';
import type { LiveKitConfig } from '../src/livekit/token.js';
import { FakeRoom, FakeSource } from './fake-room.js';

// Two gateway instances serving LiveKit rooms through the project's fake room (no LiveKit server runs here), on a
// real nats-server with a stage holding the sessions. The instance serving a room dies (its connection gone, no
// leave): the other takes the room's lease over, joins the room, and its participant's session is taken up where
// it was — the same session, never closed, never opened again.

const cfg: LiveKitConfig = {
  url: 'ws://127.0.0.1:7880',
  apiKey: 'devkey',
  apiSecret: 'failover-test-secret-0123456789',
};
const ROOM = 'standup';
const log = createLogger('livekit-failover-test', {}, 'silent');

/** A room where `alice` is already talking when the agent joins. */
class RoomWithAlice extends FakeRoom {
  override async connect(url: string, token: string, events: RoomEvents): Promise<void> {
    await super.connect(url, token, events);
    events.participantConnected('alice');
  }
}

let instances: ActorInstances;

beforeAll(async () => {
  instances = await ActorInstances.start();
  // The stage that holds each session (the others would too): what a resumed gateway finds alive.
  await instances.add('turn-detector', async () => ({}));
});
afterAll(() => instances?.stop());

async function gateway(id: string) {
  const bus = await Bus.connect({ stage: 'media-gateway', servers: instances.nats.url, logger: log });
  const rooms: FakeRoom[] = [];
  const dispatcher = new LiveKitDispatcher({
    config: cfg,
    agentId: id,
    openSession: busSessionFactory(bus, {
      admission: new Admission(bus, { stages: ['turn-detector'], openTimeoutMs: 2000, log }),
    }),
    newRoom: (name) => {
      const room = new RoomWithAlice(name);
      rooms.push(room);
      return room;
    },
    transport: { newSource: () => new FakeSource() },
  });
  const leases = new RoomLeases(await bus.kv(BUCKETS.leases), id, dispatcher, { renewMs: 100, expireMs: 500 }, log);
  await leases.start();
  return { id, bus, dispatcher, leases, rooms };
}

/** Every session opened and closed on the bus from now on. */
async function sessionsSeen(): Promise<{ opens: SessionId[]; closes: SessionId[] }> {
  const { client } = instances;
  const seen = { opens: [] as SessionId[], closes: [] as SessionId[] };
  client.subscribeGlobal(channels.sessionOpen, (m) => void seen.opens.push(m.sessionId));
  client.subscribeGlobal(channels.sessionClose, (m) => void seen.closes.push(m.sessionId));
  await client.nc.flush();
  return seen;
}

/** Alice's microphone frames on the bus (their times), once at least a few have come. */
async function aliceHeard(sid: SessionId): Promise<number[]> {
  const frames: number[] = [];
  instances.client.subscribeAudio('in', sid, (f) => void frames.push(f.tsMs));
  await instances.client.nc.flush();
  await waitFor(() => frames.length > 5, { message: 'alice’s microphone on the bus' });
  return frames;
}

/** Alice's session goes on: its clock moves on through the new gateway; opened once, never closed. */
async function aliceGoesOn(sid: SessionId, frames: number[], seen: { opens: SessionId[]; closes: SessionId[] }) {
  const before = frames[frames.length - 1]!;
  await waitFor(() => frames[frames.length - 1]! > before + 200, { message: 'alice’s audio through the new gateway' });
  expect(seen.opens.filter((s) => s === sid)).toHaveLength(1);
  expect(seen.closes).not.toContain(sid);
}

describe('LiveKit rooms survive the death of their gateway', () => {
  it('another instance takes the room over within about a second and resumes its participant’s session', async () => {
    const seen = await sessionsSeen();
    const sid = sessionIdFor(ROOM, 'alice');

    const a = await gateway('gw-a');
    const b = await gateway('gw-b');
    try {
      expect(await a.leases.claim(ROOM)).toBe(true);
      await waitFor(() => seen.opens.includes(sid), { message: 'alice’s session opened by the first gateway' });
      // The second is told of the room too (LIVEKIT_ROOMS): it leaves it to the holder.
      expect(await b.leases.claim(ROOM)).toBe(false);
      const frames = await aliceHeard(sid);
      expect(b.rooms).toHaveLength(0);

      // The first gateway dies: no more renewals, no leave, its connection gone.
      a.leases.stop();
      await a.bus.close();
      await waitFor(() => b.rooms.some((r) => r.connected), { timeoutMs: 5000, message: 'the room joined again' });
      expect(b.leases.held).toEqual([ROOM]);

      // Alice's session goes on: the same session id, not closed, not opened again, its clock moving on.
      await aliceGoesOn(sid, frames, seen);
    } finally {
      // The dead one's room clock still ticks in this process: stopped (its bus is gone, nothing reaches NATS).
      await a.dispatcher.stop().catch(() => undefined);
      b.leases.stop();
      await b.dispatcher.stop();
      await b.bus.close();
    }
  });

  it('a room sent in by POST /dispatch is leased too: refused by another instance, taken over, released on DELETE', async () => {
    const room = 'dispatched';
    const a = await gateway('gw-c');
    const b = await gateway('gw-d');
    const serverA = await startDispatchServer({ dispatcher: a.dispatcher, port: 0, leases: a.leases });
    const serverB = await startDispatchServer({ dispatcher: b.dispatcher, port: 0, leases: b.leases });
    const post = (url: string) =>
      fetch(`${url}/dispatch`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ room }),
      });
    const leaseOwner = async () => {
      const e = await (await instances.client.kv(BUCKETS.leases)).get(roomLeaseKey(room));
      return e?.operation === 'PUT' ? e.json<{ owner: string }>().owner : undefined;
    };
    try {
      expect((await post(serverA.url)).status).toBe(200);
      expect(await leaseOwner()).toBe('gw-c');
      // The room is served: a dispatch of it to another instance is refused, and that one does not join.
      const refused = await post(serverB.url);
      expect(refused.status).toBe(409);
      expect(((await refused.json()) as { error: string }).error).toMatch(/served by another gateway instance/);
      // (It may take over the rooms a test before left behind; never this one.)
      expect(b.rooms.filter((r) => r.name === room)).toHaveLength(0);

      // The first instance dies: the other takes the dispatched room over and joins it.
      a.leases.stop();
      await a.bus.close();
      await waitFor(() => b.rooms.some((r) => r.name === room && r.connected), {
        timeoutMs: 5000,
        message: 'the room joined again',
      });
      expect(await leaseOwner()).toBe('gw-d');

      // Taken out of the room: the lease goes with it, so no instance joins it again.
      expect((await fetch(`${serverB.url}/dispatch/${room}`, { method: 'DELETE' })).status).toBe(204);
      expect(b.leases.held).not.toContain(room);
      await waitFor(async () => (await leaseOwner()) === undefined, { message: 'the lease released' });
    } finally {
      await serverA.close().catch(() => undefined);
      b.leases.stop();
      await serverB.close();
      await b.bus.close();
    }
  });

  it('a gateway stopping (SIGTERM) hands its room over at once: its participant’s session is resumed, not closed', async () => {
    const room = 'handover';
    const seen = await sessionsSeen();
    const sid = sessionIdFor(room, 'alice');
    const e = await gateway('gw-e');
    const f = await gateway('gw-f');
    try {
      expect(await e.leases.claim(room)).toBe(true);
      await waitFor(() => seen.opens.includes(sid), { message: 'alice’s session opened by the first gateway' });
      const frames = await aliceHeard(sid);

      // SIGTERM: stop renewing, leave the room leaving its sessions to be resumed, park the lease.
      e.leases.stop();
      await e.dispatcher.stop(true);
      const parkedAt = performance.now();
      await e.leases.park();
      await waitFor(() => f.rooms.some((r) => r.name === room && r.connected), {
        timeoutMs: 5000,
        message: 'the room joined again',
      });
      // Taken at once, not after the lease's expiry (500 ms here).
      expect(performance.now() - parkedAt).toBeLessThan(500);
      await aliceGoesOn(sid, frames, seen);
    } finally {
      f.leases.stop();
      await f.dispatcher.stop();
      await Promise.all([e.bus.close(), f.bus.close()]);
    }
  });
});
