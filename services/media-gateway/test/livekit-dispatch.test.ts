import { fileURLToPath } from 'node:url';
import { TokenVerifier } from 'livekit-server-sdk';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { SessionId } from '@va/protocol';
import { freePort, spawnNode, startNatsServer, type NatsServerHandle } from '@va/testkit';
import {
  startDispatchServer,
  type DispatchServer,
  type DispatchServerOptions,
} from '../src/livekit/dispatch-server.js';
import { LiveKitDispatcher, type LiveKitDispatcherOptions } from '../src/livekit/dispatch.js';
import { sessionIdFor, type RoomEvents, type SessionHandle, type TransportLog } from '../src/livekit/room.js';
import type { LiveKitConfig } from '../src/livekit/token.js';
import { FakeRoom, FakeSource } from './fake-room.js';

const MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));

const cfg: LiveKitConfig = {
  url: 'ws://127.0.0.1:7880',
  apiKey: 'devkey',
  apiSecret: 'dispatch-test-secret-0123456789abcdef',
};

async function until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Sessions that say nothing, and record which were opened and closed. */
class StubSessions {
  readonly opened: SessionId[] = [];
  readonly closed: SessionId[] = [];
  factory = async (sid: SessionId): Promise<SessionHandle> => {
    this.opened.push(sid);
    return { tick: () => undefined, close: () => void this.closed.push(sid) };
  };
}

/** Log lines, kept to look at. */
class LogLines implements TransportLog {
  readonly lines: { level: string; msg: string; obj: Record<string, unknown> }[] = [];
  info = (obj: object, msg: string) => void this.lines.push({ level: 'info', msg, obj: { ...obj } });
  warn = (obj: object, msg: string) => void this.lines.push({ level: 'warn', msg, obj: { ...obj } });
  error = (obj: object, msg: string) => void this.lines.push({ level: 'error', msg, obj: { ...obj } });
  matching(pattern: RegExp): Record<string, unknown>[] {
    return this.lines.filter((l) => pattern.test(l.msg)).map((l) => l.obj);
  }
}

/**
 * A dispatcher over fake rooms (kept in `rooms`, by name, the last one made) and its server; every one is
 * closed after each test. The next `failures` rooms made fail to connect.
 */
class DispatchHarness {
  readonly rooms = new Map<string, FakeRoom>();
  readonly sessions = new StubSessions();
  readonly log = new LogLines();
  created = 0;
  failures = 0;
  dispatcher!: LiveKitDispatcher;
  server!: DispatchServer;

  static async start(
    server: Omit<DispatchServerOptions, 'dispatcher'> = {},
    dispatcher: Partial<LiveKitDispatcherOptions> = {},
  ): Promise<DispatchHarness> {
    const h = new DispatchHarness();
    h.dispatcher = new LiveKitDispatcher({
      config: cfg,
      openSession: h.sessions.factory,
      agentId: 'test1',
      newRoom: (name) => {
        h.created++;
        const room = new FakeRoom(name);
        if (h.failures > 0) {
          h.failures--;
          room.failWith = new Error('connect ECONNREFUSED');
        }
        h.rooms.set(name, room);
        return room;
      },
      transport: { newSource: () => new FakeSource() },
      log: h.log,
      ...dispatcher,
    });
    h.server = await startDispatchServer({ dispatcher: h.dispatcher, ...server });
    openServers.push(h.server);
    return h;
  }

  fetch(path: string, init: RequestInit = {}): Promise<Response> {
    return fetch(`${this.server.url}${path}`, init);
  }

  dispatch(room: unknown, headers: Record<string, string> = {}): Promise<Response> {
    return this.fetch('/dispatch', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify({ room }),
    });
  }

  events(room: string): RoomEvents {
    return this.rooms.get(room)!.events!;
  }
}

const openServers: DispatchServer[] = [];
afterEach(async () => {
  await Promise.all(openServers.splice(0).map((s) => s.close()));
});

describe('livekit dispatch endpoint', () => {
  it('POST /dispatch joins once with an agent token for that room only', async () => {
    const h = await DispatchHarness.start({ host: '127.0.0.1' });
    expect(h.server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const answers = await Promise.all([h.dispatch('room-a'), h.dispatch('room-a')]);
    for (const res of answers) {
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ room: 'room-a', identity: 'agent-test1' });
    }
    expect((await h.dispatch('room-a')).status).toBe(200);
    expect(h.created).toBe(1);

    const room = h.rooms.get('room-a')!;
    expect(room.connected).toBe(true);
    expect(room.url).toBe(cfg.url);
    const claims = await new TokenVerifier(cfg.apiKey, cfg.apiSecret).verify(room.token!);
    expect(claims.sub).toBe('agent-test1');
    expect(claims.kind).toBe('agent');
    expect(claims.video).toMatchObject({ room: 'room-a', roomJoin: true, canPublishData: false });
    for (const admin of ['roomAdmin', 'roomCreate', 'roomList', 'roomRecord', 'ingressAdmin'] as const) {
      expect(claims.video?.[admin]).toBeFalsy();
    }
  });

  it('GET /dispatch lists rooms and the participants being served', async () => {
    const h = await DispatchHarness.start();
    expect(await (await h.fetch('/dispatch')).json()).toEqual({ rooms: [] });
    await h.dispatch('room-a');
    await h.dispatch('room-b');
    h.events('room-a').participantConnected('alice');
    h.events('room-a').participantConnected('agent-other'); // another agent is never served
    h.events('room-b').participantConnected('bob');
    await until(() => h.sessions.opened.length === 2);
    const body = (await (await h.fetch('/dispatch')).json()) as { rooms: unknown[] };
    expect(body.rooms).toEqual([
      { room: 'room-a', identity: 'agent-test1', state: 'joined', participants: ['alice'] },
      { room: 'room-b', identity: 'agent-test1', state: 'joined', participants: ['bob'] },
    ]);
  });

  it('DELETE /dispatch/<room> leaves the room and closes its sessions; 404 when not in it', async () => {
    const h = await DispatchHarness.start();
    await h.dispatch('room-a.1');
    h.events('room-a.1').participantConnected('alice');
    await until(() => h.sessions.opened.length === 1);
    const res = await h.fetch(`/dispatch/${encodeURIComponent('room-a.1')}`, { method: 'DELETE' });
    expect(res.status).toBe(204);
    expect(h.sessions.closed).toEqual(h.sessions.opened);
    expect(h.rooms.get('room-a.1')!.connected).toBe(false);
    expect(await (await h.fetch('/dispatch')).json()).toEqual({ rooms: [] });
    const again = await h.fetch('/dispatch/room-a.1', { method: 'DELETE' });
    expect(again.status).toBe(404);
    expect(((await again.json()) as { error: string }).error).toContain('not in room');
  });

  it('bad JSON and bad room names are 400 with a message', async () => {
    const h = await DispatchHarness.start();
    const notJson = await h.fetch('/dispatch', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{room: x',
    });
    expect(notJson.status).toBe(400);
    expect(((await notJson.json()) as { error: string }).error).toMatch(/JSON/);
    const cases: [unknown, RegExp][] = [
      [undefined, /room is required/],
      [42, /room is required/],
      ['', /empty/],
      ['has space', /only contain/],
      ['tab\there', /only contain/],
      ['bell\u0007', /only contain/],
      ['x'.repeat(129), /128/],
      // NATS wildcards and separators, a right-to-left override, a zero-width space, a look-alike letter.
      ['room.*', /only contain/],
      ['room>', /only contain/],
      ['abc\u202Egnp.exe', /only contain/],
      ['ro\u200Bom', /only contain/],
      ['r\u043Eom', /only contain/],
      ['-leading-dash', /start with/],
    ];
    for (const [room, message] of cases) {
      const res = await h.dispatch(room);
      expect(res.status, JSON.stringify(room)).toBe(400);
      expect(((await res.json()) as { error: string }).error).toMatch(message);
    }
    const badPath = await h.fetch('/dispatch/%E0%A4%A', { method: 'DELETE' });
    expect(badPath.status).toBe(400);
    expect(h.created).toBe(0);
  });

  it('refuses cross-site requests and bodies other than JSON (CSRF), and joins nothing for them', async () => {
    const h = await DispatchHarness.start();
    // What a form or fetch on another site can send without a preflight: text/plain, urlencoded, multipart.
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
      const res = await h.fetch('/dispatch', {
        method: 'POST',
        headers: { 'content-type': type },
        body: '{"room":"r1"}',
      });
      expect(res.status, type).toBe(415);
    }
    const noType = await h.fetch('/dispatch', { method: 'POST', body: '{"room":"r1"}' });
    expect(noType.status).toBe(415);
    // A page on another site, even with the right content type (its preflight gets no CORS answer; a script
    // that skips the browser has no victim's network position to use).
    const crossSite = await h.dispatch('r1', { origin: 'https://evil.example' });
    expect(crossSite.status).toBe(403);
    const crossDelete = await h.fetch('/dispatch/r1', {
      method: 'DELETE',
      headers: { origin: 'https://evil.example' },
    });
    expect(crossDelete.status).toBe(403);
    expect(h.created).toBe(0);
    // The same origin is served.
    const url = new URL(h.server.url);
    expect((await h.dispatch('r1', { origin: url.origin })).status).toBe(200);
  });

  it('refuses to start beyond loopback without a secret', async () => {
    const dispatcher = new LiveKitDispatcher({ config: cfg, openSession: new StubSessions().factory });
    await expect(startDispatchServer({ dispatcher, host: '0.0.0.0' })).rejects.toThrow(/GATEWAY_DISPATCH_SECRET/);
    await expect(startDispatchServer({ dispatcher, host: '::' })).rejects.toThrow(/beyond loopback/);
    await dispatcher.stop();
  });

  it('a failed join is 502, never shows the secret or the token, and leaves nothing behind', async () => {
    let token = '';
    const h = await DispatchHarness.start(
      {},
      {
        newRoom: (name) =>
          new (class extends FakeRoom {
            override async connect(url: string, t: string): Promise<void> {
              token = t;
              // As if the SDK echoed its credentials in an error.
              throw new Error(`cannot reach ${url}?access_token=${t} (secret ${cfg.apiSecret})`);
            }
          })(name),
      },
    );
    const res = await h.dispatch('room-x');
    expect(res.status).toBe(502);
    const text = await res.text();
    expect(token).not.toBe('');
    expect(text).toContain('room-x');
    expect(text).toContain('cannot reach');
    expect(text).not.toContain(cfg.apiSecret);
    expect(text).not.toContain(token);
    expect(h.dispatcher.list()).toEqual([]);
  });

  it('a join that never completes times out with 502', async () => {
    const h = await DispatchHarness.start(
      {},
      {
        joinTimeoutMs: 100,
        newRoom: (name) =>
          new (class extends FakeRoom {
            override connect(): Promise<void> {
              return new Promise(() => {});
            }
          })(name),
      },
    );
    const res = await h.dispatch('slow-room');
    expect(res.status).toBe(502);
    expect(((await res.json()) as { error: string }).error).toMatch(/no connection after 100 ms/);
    expect(h.dispatcher.list()).toEqual([]);
  });

  it('a DELETE during the join waits for it, then leaves; a POST after that joins afresh', async () => {
    let release: () => void = () => {};
    const h = await DispatchHarness.start(
      {},
      {
        newRoom: (name) => {
          h.created++;
          const room = new (class extends FakeRoom {
            override async connect(url: string, token: string, events: RoomEvents): Promise<void> {
              if (h.created === 1) await new Promise<void>((r) => (release = r));
              await super.connect(url, token, events);
            }
          })(name);
          h.rooms.set(name, room);
          return room;
        },
      },
    );
    const joining = h.dispatch('room-a');
    await until(() => h.created === 1);
    expect(h.dispatcher.list().map((r) => r.state)).toEqual(['joining']);
    const leaving = h.fetch('/dispatch/room-a', { method: 'DELETE' });
    await new Promise((r) => setTimeout(r, 20));
    release();
    expect((await joining).status).toBe(200);
    expect((await leaving).status).toBe(204);
    expect(h.rooms.get('room-a')!.connected).toBe(false);
    expect((await h.dispatch('room-a')).status).toBe(200);
    expect(h.created).toBe(2);
    expect(h.rooms.get('room-a')!.connected).toBe(true);
  });

  it('more rooms than the limit are refused with 503', async () => {
    const h = await DispatchHarness.start({}, { maxRooms: 1 });
    expect((await h.dispatch('one')).status).toBe(200);
    const res = await h.dispatch('two');
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: string }).error).toMatch(/limit of 1 rooms/);
  });

  it('while the pipeline is full a POST is 503 naming the full stage, and joins nothing; once it has room it joins', async () => {
    let busy: { stage: string; reason: string } | undefined = {
      stage: 'turn-detector',
      reason: 'turn-detector is full (every instance at capacity or overloaded)',
    };
    const h = await DispatchHarness.start({ busy: () => busy });
    const res = await h.dispatch('room-a');
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('5');
    expect(await res.json()).toEqual({
      error: 'busy, try again: turn-detector is full (every instance at capacity or overloaded)',
      stage: 'turn-detector',
    });
    expect(h.created).toBe(0);
    busy = undefined;
    expect((await h.dispatch('room-a')).status).toBe(200);
    expect(h.created).toBe(1);
  });

  it('with a dispatch secret every route but /healthz needs the bearer token', async () => {
    const secret = 'let-me-in-0123456789';
    const h = await DispatchHarness.start({ secret, tokenEndpoint: true });
    expect((await h.fetch('/healthz')).status).toBe(200);
    for (const auth of [undefined, 'Bearer wrong', `Basic ${secret}`, `Bearer ${secret}x`]) {
      const headers: Record<string, string> = auth ? { authorization: auth } : {};
      expect((await h.fetch('/dispatch', { headers })).status, auth).toBe(401);
      expect((await h.dispatch('room-a', headers)).status, auth).toBe(401);
      expect((await h.fetch('/token?room=r&identity=u', { headers })).status, auth).toBe(401);
      expect((await h.fetch('/nowhere', { headers })).status, auth).toBe(401);
    }
    expect(h.created).toBe(0);
    const ok = { authorization: `Bearer ${secret}` };
    expect((await h.fetch('/dispatch', { headers: ok })).status).toBe(200);
    expect((await h.dispatch('room-a', ok)).status).toBe(200);
    expect((await h.fetch('/token?room=r&identity=u', { headers: ok })).status).toBe(200);
  });

  it('GET /token is 404 unless enabled; enabled, it gives a verifiable mic-only client token', async () => {
    const off = await DispatchHarness.start();
    expect((await off.fetch('/token?room=room-a&identity=alice')).status).toBe(404);

    const on = await DispatchHarness.start({ tokenEndpoint: true });
    const res = await on.fetch('/token?room=room-a&identity=alice');
    expect(res.status).toBe(200);
    const body = (await res.json()) as { url: string; token: string };
    expect(body.url).toBe(cfg.url);
    const claims = await new TokenVerifier(cfg.apiKey, cfg.apiSecret).verify(body.token);
    expect(claims.sub).toBe('alice');
    expect(claims.video).toMatchObject({ room: 'room-a', roomJoin: true, canPublishData: false });
    expect(claims.video?.canPublishSources).toEqual(['microphone']);
    expect(claims.video?.roomAdmin).toBeFalsy();

    for (const query of [
      '?room=room-a',
      '?identity=alice',
      '?room=room-a&identity=agent-x',
      '?room=a%20b&identity=u',
    ]) {
      const bad = await on.fetch(`/token${query}`);
      expect(bad.status, query).toBe(400);
      expect(((await bad.json()) as { error: string }).error.length).toBeGreaterThan(0);
    }
    expect((await on.fetch('/token?room=r&identity=u', { method: 'POST' })).status).toBe(405);
  });

  it('health, unknown paths, wrong methods and a body over the limit', async () => {
    const h = await DispatchHarness.start({ maxBodyBytes: 1024 });
    const health = await h.fetch('/healthz');
    expect([health.status, await health.text()]).toEqual([200, 'ok\n']);
    expect((await h.fetch('/nowhere')).status).toBe(404);
    const put = await h.fetch('/dispatch', { method: 'PUT', body: '{}' });
    expect(put.status).toBe(405);
    expect(put.headers.get('allow')).toBe('GET, POST');
    expect((await h.fetch('/dispatch/room-a')).status).toBe(405);

    const big = await h.fetch('/dispatch', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ room: 'r', pad: 'x'.repeat(2048) }),
    });
    expect(big.status).toBe(413);
    expect(((await big.json()) as { error: string }).error).toMatch(/1024 bytes/);
    // Without a length up front (chunked), reading stops at the limit too.
    const chunks = new ReadableStream<Uint8Array>({
      start(c) {
        for (let i = 0; i < 4; i++) c.enqueue(new TextEncoder().encode(' '.repeat(512)));
        c.close();
      },
    });
    const chunked = await h.fetch('/dispatch', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: chunks,
      duplex: 'half',
    } as RequestInit & { duplex: 'half' });
    expect(chunked.status).toBe(413);
    expect(h.created).toBe(0);
  });

  it('a room LiveKit puts the agent out of: sessions close, it is no longer listed, a POST joins afresh', async () => {
    const h = await DispatchHarness.start();
    await h.dispatch('room-a');
    h.events('room-a').participantConnected('alice');
    await until(() => h.sessions.opened.length === 1);
    const first = h.rooms.get('room-a')!;

    first.lose('ROOM_DELETED');
    await until(() => h.sessions.closed.length === 1);
    await until(() => h.dispatcher.list().length === 0);
    expect(h.sessions.closed).toEqual([sessionIdFor('room-a', 'alice')]);
    expect(await (await h.fetch('/dispatch')).json()).toEqual({ rooms: [] });
    expect(h.log.matching(/lost LiveKit room/)).toEqual([
      { room: 'room-a', identity: 'agent-test1', reason: 'ROOM_DELETED' },
    ]);
    expect(h.log.lines.find((l) => /lost LiveKit room/.test(l.msg))?.level).toBe('warn');

    expect((await h.dispatch('room-a')).status).toBe(200);
    expect(h.created).toBe(2);
    const second = h.rooms.get('room-a')!;
    expect(second).not.toBe(first);
    expect([second.connected, second.connects]).toEqual([true, 1]);
    expect(h.dispatcher.list()).toEqual([
      { room: 'room-a', identity: 'agent-test1', state: 'joined', participants: [] },
    ]);
  });

  it('a POST while the lost room closes its sessions waits for them, then joins afresh', async () => {
    let release: (() => void) | undefined;
    const h = await DispatchHarness.start(
      {},
      {
        openSession: async (sid) => ({
          tick: () => undefined,
          close: () => new Promise<void>((r) => (release = r)).then(() => void h.sessions.closed.push(sid)),
        }),
      },
    );
    await h.dispatch('room-a');
    h.events('room-a').participantConnected('alice');
    await until(() => h.rooms.get('room-a')!.published.length === 1);
    h.rooms.get('room-a')!.lose('SIGNAL_CLOSE');
    expect(h.dispatcher.list().map((r) => r.state)).toEqual(['leaving']);
    const again = h.dispatch('room-a');
    // The session is closing (its clock stops at its next frame) and holds the close: the POST waits for it.
    await until(() => release !== undefined);
    await new Promise((r) => setTimeout(r, 20));
    expect(h.created).toBe(1);
    release!();
    expect((await again).status).toBe(200);
    expect(h.sessions.closed).toEqual([sessionIdFor('room-a', 'alice')]);
    expect(h.created).toBe(2);
    expect(h.rooms.get('room-a')!.connected).toBe(true);
  });

  it('our own leave is not a loss; a late loss of a replaced room leaves its successor alone', async () => {
    const h = await DispatchHarness.start();
    await h.dispatch('room-a');
    const left = h.rooms.get('room-a')!;
    expect((await h.fetch('/dispatch/room-a', { method: 'DELETE' })).status).toBe(204);
    left.events!.disconnected('CLIENT_INITIATED'); // as if the SDK reported the disconnect we asked for
    expect(h.log.matching(/lost/)).toEqual([]);

    // A join that timed out, whose room connects (and is lost) after a second join took its place.
    let releaseSlow: () => void = () => {};
    const g = await DispatchHarness.start(
      {},
      {
        joinTimeoutMs: 50,
        newRoom: (name) => {
          g.created++;
          const room = new (class extends FakeRoom {
            override async connect(url: string, token: string, events: RoomEvents): Promise<void> {
              if (g.created === 1) {
                await new Promise<void>((r) => (releaseSlow = r));
                await super.connect(url, token, events);
                this.lose('SIGNAL_CLOSE');
                return;
              }
              await super.connect(url, token, events);
            }
          })(name);
          g.rooms.set(name, room);
          return room;
        },
      },
    );
    expect((await g.dispatch('room-b')).status).toBe(502);
    expect((await g.dispatch('room-b')).status).toBe(200);
    const successor = g.rooms.get('room-b')!;
    releaseSlow();
    await new Promise((r) => setTimeout(r, 20));
    expect(successor.connected).toBe(true);
    expect(g.dispatcher.list()).toEqual([
      { room: 'room-b', identity: 'agent-test1', state: 'joined', participants: [] },
    ]);
    expect(g.log.matching(/lost LiveKit room/)).toEqual([]);
  });

  it('keepJoined retries a room that fails to connect, backing off to a cap, until it is joined', async () => {
    const waits: number[] = [];
    const h = await DispatchHarness.start(
      {},
      {
        retry: { firstMs: 1000, maxMs: 4000 },
        sleep: async (ms) => {
          waits.push(ms);
          await new Promise((r) => setImmediate(r));
        },
      },
    );
    h.failures = 5;
    expect(await h.dispatcher.keepJoined('room-a')).toBe(true);
    expect(h.created).toBe(6);
    expect(waits).toEqual([1000, 2000, 4000, 4000, 4000]);
    expect(h.rooms.get('room-a')!.connected).toBe(true);
    expect(h.dispatcher.list().map((r) => [r.room, r.state])).toEqual([['room-a', 'joined']]);
    const retries = h.log.matching(/retrying/);
    expect(retries.map((r) => [r.attempt, r.retryInMs])).toEqual([
      [1, 1000],
      [2, 2000],
      [3, 4000],
      [4, 4000],
      [5, 4000],
    ]);
    expect(String(retries[0]!.err)).toContain('ECONNREFUSED');
  });

  it('keepJoined stops retrying on stop(), also mid-wait, and on a DELETE of the room', async () => {
    const h = await DispatchHarness.start({}, { retry: { firstMs: 1, maxMs: 4 } });
    h.failures = Infinity;
    const kept = h.dispatcher.keepJoined('room-a');
    await until(() => h.created >= 3);
    await h.dispatcher.stop();
    expect(await kept).toBe(false);
    const tried = h.created;
    await new Promise((r) => setTimeout(r, 30));
    expect(h.created).toBe(tried);
    expect(await h.dispatcher.keepJoined('room-b')).toBe(false);
    expect(h.dispatcher.list()).toEqual([]);

    // The real wait (a minute here) ends at once on stop().
    const slow = await DispatchHarness.start({}, { retry: { firstMs: 60_000 } });
    slow.failures = 1;
    const waiting = slow.dispatcher.keepJoined('room-a');
    await until(() => slow.created === 1 && slow.log.matching(/retrying/).length === 1);
    await slow.server.close();
    expect(await waiting).toBe(false);
    expect(slow.created).toBe(1);

    const d = await DispatchHarness.start({}, { retry: { firstMs: 1, maxMs: 4 } });
    d.failures = Infinity;
    const deleted = d.dispatcher.keepJoined('room-c');
    await until(() => d.created >= 2);
    expect((await d.fetch('/dispatch/room-c', { method: 'DELETE' })).status).toBe(204);
    expect(await deleted).toBe(false);
    const tries = d.created;
    await new Promise((r) => setTimeout(r, 30));
    expect(d.created).toBe(tries);
    expect((await d.fetch('/dispatch/room-c', { method: 'DELETE' })).status).toBe(404);
  });

  it('keepJoined stops retrying once the room is joined through the API', async () => {
    let wake: () => void = () => {};
    const h = await DispatchHarness.start({}, { sleep: () => new Promise<void>((r) => (wake = r)) });
    h.failures = 1;
    const kept = h.dispatcher.keepJoined('room-a');
    await until(() => h.log.matching(/retrying/).length === 1);
    expect((await h.dispatch('room-a')).status).toBe(200);
    wake();
    expect(await kept).toBe(true);
    expect(h.created).toBe(2);
    expect(h.rooms.get('room-a')!.connected).toBe(true);
  });

  it('a kept room LiveKit puts the agent out of is joined again, retrying as needed, until deleted', async () => {
    const h = await DispatchHarness.start({}, { retry: { firstMs: 1, maxMs: 4 } });
    expect(await h.dispatcher.keepJoined('room-a')).toBe(true);
    h.events('room-a').participantConnected('alice');
    await until(() => h.sessions.opened.length === 1);

    h.rooms.get('room-a')!.lose('SIGNAL_CLOSE');
    await until(() => h.created === 2 && h.rooms.get('room-a')!.connected);
    expect(h.sessions.closed).toEqual([sessionIdFor('room-a', 'alice')]);
    expect(h.dispatcher.list()).toEqual([
      { room: 'room-a', identity: 'agent-test1', state: 'joined', participants: [] },
    ]);
    expect(h.log.matching(/lost LiveKit room; joining it again/)).toEqual([
      { room: 'room-a', identity: 'agent-test1', reason: 'SIGNAL_CLOSE' },
    ]);

    h.failures = 2; // LiveKit is restarting: two refusals, then in again
    h.rooms.get('room-a')!.lose('SERVER_SHUTDOWN');
    await until(() => h.created === 5 && h.rooms.get('room-a')!.connected);
    expect(h.log.matching(/retrying/)).toHaveLength(2);

    expect((await h.fetch('/dispatch/room-a', { method: 'DELETE' })).status).toBe(204);
    await new Promise((r) => setTimeout(r, 30));
    expect(h.created).toBe(5);
    expect(h.dispatcher.list()).toEqual([]);
  });

  it('a DELETE while a lost kept room still closes its sessions: the room is not joined again', async () => {
    let release: () => void = () => {};
    const h = await DispatchHarness.start(
      {},
      {
        sleep: () => new Promise((r) => setImmediate(r)),
        openSession: async () => ({
          tick: () => undefined,
          close: () => new Promise<void>((r) => (release = r)),
        }),
      },
    );
    expect(await h.dispatcher.keepJoined('room-a')).toBe(true);
    h.events('room-a').participantConnected('alice');
    await until(() => h.rooms.get('room-a')!.published.length === 1);
    h.rooms.get('room-a')!.lose('SIGNAL_CLOSE'); // the rejoin now waits for alice's session to close
    await new Promise((r) => setTimeout(r, 20));
    const deleted = h.fetch('/dispatch/room-a', { method: 'DELETE' });
    await new Promise((r) => setTimeout(r, 20));
    release();
    expect((await deleted).status).toBe(204);
    await new Promise((r) => setTimeout(r, 30));
    expect(h.created).toBe(1);
    expect(h.dispatcher.list()).toEqual([]);
  });

  it('closing the server leaves every room and closes every session', async () => {
    const h = await DispatchHarness.start();
    await h.dispatch('room-a');
    await h.dispatch('room-b');
    h.events('room-a').participantConnected('alice');
    h.events('room-b').participantConnected('bob');
    await until(() => h.sessions.opened.length === 2);
    await h.server.close();
    expect([...h.sessions.closed].sort()).toEqual(
      [sessionIdFor('room-a', 'alice'), sessionIdFor('room-b', 'bob')].sort(),
    );
    expect([...h.rooms.values()].every((r) => !r.connected)).toBe(true);
    expect(h.dispatcher.list()).toEqual([]);
    await expect(h.fetch('/healthz')).rejects.toThrow();
    await expect(h.dispatcher.join('room-c')).rejects.toThrow(/shutting down/);
  });
});

describe('media-gateway with GATEWAY_TRANSPORT=livekit', () => {
  it('exits 2 naming the variable when LIVEKIT_URL is missing or bad, never printing the secret', async () => {
    const run = async (url: string | undefined) => {
      const env: Record<string, string> = {
        GATEWAY_TRANSPORT: 'livekit',
        LIVEKIT_API_KEY: 'devkey',
        LIVEKIT_API_SECRET: 'never-print-this-secret',
        // Nothing may be reached: configuration is checked before the bus is.
        NATS_URL: 'nats://127.0.0.1:1',
        ...(url === undefined ? {} : { LIVEKIT_URL: url }),
      };
      // Missing for real, unless the test runner has one of its own (then empty stands in for missing).
      if (url === undefined && process.env.LIVEKIT_URL !== undefined) env.LIVEKIT_URL = '';
      const gateway = spawnNode(MAIN, { env, maxLifetimeSec: 30 });
      expect(await gateway.exited, String(url)).toEqual({ code: 2, signal: null });
      const stderr = gateway.stderr.join('\n');
      expect(stderr).toContain('LIVEKIT_URL');
      expect(stderr).not.toContain('never-print-this-secret');
    };
    await Promise.all([run(undefined), run('ftp://livekit.example')]);
  });

  describe('with a bus', () => {
    let nats: NatsServerHandle;
    beforeAll(async () => {
      nats = await startNatsServer();
    });
    afterAll(async () => {
      await nats?.stop();
    });

    it('starts with no rooms, answers /healthz, refuses a room it cannot reach with 502, stops on SIGTERM', async () => {
      const closedPort = await freePort(); // nothing listens there: LiveKit is unreachable
      const secret = 'main-test-secret-0123456789';
      const gateway = spawnNode(MAIN, {
        env: {
          NATS_URL: nats.url,
          GATEWAY_TRANSPORT: 'livekit',
          GATEWAY_HTTP_PORT: '0',
          LIVEKIT_URL: `ws://127.0.0.1:${closedPort}`,
          LIVEKIT_API_KEY: 'devkey',
          LIVEKIT_API_SECRET: secret,
          LIVEKIT_ROOMS: '',
          LOG_LEVEL: 'info',
        },
        maxLifetimeSec: 60,
      });
      const ready = await gateway.waitForJson<{ url: string }>((l) => l.msg === 'dispatch endpoint ready', 30_000);
      expect(ready.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const health = await fetch(`${ready.url}/healthz`);
      expect(health.status).toBe(200);
      expect(await (await fetch(`${ready.url}/dispatch`)).json()).toEqual({ rooms: [] });

      // The real rtc-node room: the connection is refused, and the answer says so without credentials.
      const res = await fetch(`${ready.url}/dispatch`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ room: 'r1' }),
      });
      expect(res.status).toBe(502);
      const text = await res.text();
      expect(text).toContain('r1');
      expect(text).not.toContain(secret);

      expect(await gateway.stop(15_000)).toEqual({ code: 0, signal: null });
      expect(gateway.lines.join('\n')).not.toContain(secret);
    });

    it('keeps trying LIVEKIT_ROOMS it cannot reach yet, backing off, and stops on SIGTERM', async () => {
      const closedPort = await freePort();
      const secret = 'main-test-secret-abcdef0123456789';
      const gateway = spawnNode(MAIN, {
        env: {
          NATS_URL: nats.url,
          GATEWAY_TRANSPORT: 'livekit',
          GATEWAY_HTTP_PORT: '0',
          LIVEKIT_URL: `ws://127.0.0.1:${closedPort}`,
          LIVEKIT_API_KEY: 'devkey',
          LIVEKIT_API_SECRET: secret,
          LIVEKIT_ROOMS: 'start-a, start-b',
          LOG_LEVEL: 'info',
        },
        maxLifetimeSec: 60,
      });
      type Retry = { room: string; attempt: number; retryInMs: number };
      const retried = (room: string) =>
        gateway.waitForJson<Retry>(
          (l) => l.msg === 'could not join room; retrying' && l.room === room && l.attempt === 2,
          30_000,
        );
      const [a, b] = await Promise.all([retried('start-a'), retried('start-b')]);
      expect([a.retryInMs, b.retryInMs]).toEqual([2000, 2000]);
      expect(await gateway.stop(15_000)).toEqual({ code: 0, signal: null });
      expect(gateway.lines.join('\n')).not.toContain(secret);
    });
  });
});
