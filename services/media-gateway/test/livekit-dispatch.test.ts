import { fileURLToPath } from 'node:url';
import { TokenVerifier } from 'livekit-server-sdk';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { SessionId } from '@va/protocol';
import { freePort, spawnNode, startNatsServer, type NatsServerHandle } from '@va/testkit';
import {
  LiveKitDispatcher,
  startDispatchServer,
  type DispatchServer,
  type DispatchServerOptions,
  type LiveKitDispatcherOptions,
} from '../src/livekit/dispatch.js';
import type { RoomEvents, SessionHandle } from '../src/livekit/room.js';
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

/** A dispatcher over fake rooms (kept in `rooms`, by name) and its server; every one is closed after each test. */
class DispatchHarness {
  readonly rooms = new Map<string, FakeRoom>();
  readonly sessions = new StubSessions();
  created = 0;
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
        h.rooms.set(name, room);
        return room;
      },
      transport: { newSource: () => new FakeSource() },
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
    await h.dispatch('room-a/1');
    h.events('room-a/1').participantConnected('alice');
    await until(() => h.sessions.opened.length === 1);
    const res = await h.fetch(`/dispatch/${encodeURIComponent('room-a/1')}`, { method: 'DELETE' });
    expect(res.status).toBe(204);
    expect(h.sessions.closed).toEqual(h.sessions.opened);
    expect(h.rooms.get('room-a/1')!.connected).toBe(false);
    expect(await (await h.fetch('/dispatch')).json()).toEqual({ rooms: [] });
    const again = await h.fetch('/dispatch/room-a%2F1', { method: 'DELETE' });
    expect(again.status).toBe(404);
    expect(((await again.json()) as { error: string }).error).toContain('not in room');
  });

  it('bad JSON and bad room names are 400 with a message', async () => {
    const h = await DispatchHarness.start();
    const notJson = await h.fetch('/dispatch', { method: 'POST', body: '{room: x' });
    expect(notJson.status).toBe(400);
    expect(((await notJson.json()) as { error: string }).error).toMatch(/JSON/);
    const cases: [unknown, RegExp][] = [
      [undefined, /room is required/],
      [42, /room is required/],
      ['', /empty/],
      ['has space', /white space/],
      ['tab\there', /white space/],
      ['bell\u0007', /control/],
      ['x'.repeat(129), /128/],
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
      body: chunks,
      duplex: 'half',
    } as RequestInit & { duplex: 'half' });
    expect(chunked.status).toBe(413);
    expect(h.created).toBe(0);
  });

  it('closing the server leaves every room and closes every session', async () => {
    const h = await DispatchHarness.start();
    await h.dispatch('room-a');
    await h.dispatch('room-b');
    h.events('room-a').participantConnected('alice');
    h.events('room-b').participantConnected('bob');
    await until(() => h.sessions.opened.length === 2);
    await h.server.close();
    expect([...h.sessions.closed].sort()).toEqual(['room-a-alice', 'room-b-bob']);
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
      const res = await fetch(`${ready.url}/dispatch`, { method: 'POST', body: JSON.stringify({ room: 'r1' }) });
      expect(res.status).toBe(502);
      const text = await res.text();
      expect(text).toContain('r1');
      expect(text).not.toContain(secret);

      expect(await gateway.stop(15_000)).toEqual({ code: 0, signal: null });
      expect(gateway.lines.join('\n')).not.toContain(secret);
    });
  });
});
