import { get } from 'node:http';
import { connect as tcpConnect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { waitFor } from '@va/testkit';
import { CLOSE, startWebServer, type WebServer } from '../src/web/server.js';
import { connect, errors, fakeFactory, pcm, sleep, type Client } from './web-client.js';

let server: WebServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

/** The underlying TCP socket of a client (ws keeps it private): paused, the client reads nothing. */
function tcpOf(c: Client): Socket {
  return (c.ws as unknown as { _socket: Socket })._socket;
}

/** Connects as a client behind a proxy that says it is `address`; resolves with the HTTP status if refused. */
function connectAs(server: WebServer, address: string): Promise<Client | number> {
  return connect(server, { 'x-forwarded-for': address }).catch((err: Error) => {
    const status = /Unexpected server response: (\d+)/.exec(err.message);
    if (!status) throw err;
    return Number(status[1]);
  });
}

/** GET `path` with the given Host header (fetch does not let a caller set it): the status. */
function statusAs(server: WebServer, host: string, path = '/'): Promise<number> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port: server.port, path, headers: { host } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    }).once('error', reject);
  });
}

const ready = (c: Client) => waitFor(() => c.events.some((e) => e.type === 'ready'), { message: 'ready' });

describe('web transport limits', () => {
  it('closes a socket that sends no audio, and cuts off one that stops answering pings', async () => {
    const { factory } = fakeFactory();
    server = await startWebServer({ factory, idleTimeoutMs: 400, pingIntervalMs: 60_000 });
    const idle = await connect(server);
    await ready(idle);
    // A socket that talks stays; one that says nothing is closed with 4000 and told why.
    const talking = await connect(server);
    await ready(talking);
    const feed = setInterval(() => talking.ws.send(pcm(new Int16Array(320).fill(500))), 20);
    try {
      expect(await idle.closed).toBe(CLOSE.idle);
      expect(errors(idle)).toEqual([expect.objectContaining({ code: 'idle' })]);
      expect(talking.ws.readyState).toBe(WebSocket.OPEN);
    } finally {
      clearInterval(feed);
    }
    talking.ws.close();
    await waitFor(() => server!.sessions === 0);
    await server.close();

    // Pings every 100 ms: a client that answers them stays, one whose socket is stalled is cut off.
    server = await startWebServer({ factory, idleTimeoutMs: 60_000, pingIntervalMs: 100 });
    const alive = await connect(server);
    const stalled = await connect(server);
    await ready(alive);
    await ready(stalled);
    tcpOf(stalled).pause();
    await waitFor(() => server!.sessions === 1, { message: 'stalled socket cut off', timeoutMs: 5000 });
    expect(alive.ws.readyState).toBe(WebSocket.OPEN);
    tcpOf(stalled).resume();
    expect(await stalled.closed).toBe(1006); // terminated: no closing handshake
  });

  it('bounds what it holds for a client that does not read, and never answers errors into a full buffer', async () => {
    const { factory, sessions } = fakeFactory();
    const maxSendBufferBytes = 64 * 1024;
    server = await startWebServer({ factory, maxSendBufferBytes, maxBufferedBytes: 16 * 1024 });
    const c = await connect(server);
    await ready(c);
    tcpOf(c).pause();
    // The client keeps sending bad frames (each would be answered) while the session emits 20 MB of events.
    const bad = setInterval(() => c.ws.send(Buffer.alloc(641)), 10);
    try {
      const text = 'x'.repeat(10_000);
      for (let i = 0; i < 2000 && server.sessions > 0; i++) {
        sessions[0]!.emit({ type: 'transcript', text, final: false, startMs: 0, endMs: 0 });
        if (i % 50 === 0) await sleep(1);
      }
      await waitFor(() => server!.sessions === 0, { message: 'non-reading client cut off' });
    } finally {
      clearInterval(bad);
    }
    // At most the bound plus the one message that would have crossed it; the kernel's socket buffers come on top.
    expect(server.peakBufferedBytes).toBeLessThanOrEqual(maxSendBufferBytes);
    expect(sessions[0]!.closed).toBe(true);
    // The gateway serves the next client as before.
    const next = await connect(server);
    await ready(next);
    next.ws.close();
  });

  it('closes a socket that floods messages (1008)', async () => {
    const { factory } = fakeFactory();
    server = await startWebServer({ factory, maxMessagesPerSecond: 100 });
    const c = await connect(server);
    await ready(c);
    for (let i = 0; i < 300; i++) c.ws.send(pcm(new Int16Array(16)));
    expect(await c.closed).toBe(CLOSE.badMessage);
    expect(errors(c)).toEqual([expect.objectContaining({ code: 'rate-limited' })]);
  });

  it('limits sessions and connects per client, so one client cannot lock the others out', async () => {
    const { factory } = fakeFactory();
    server = await startWebServer({
      factory,
      trustProxy: true,
      maxSessions: 4,
      maxSessionsPerClient: 2,
      connectsPerMinute: 40,
    });
    // One client may hold two sessions; the third is refused before a session is opened.
    const a1 = (await connectAs(server, '10.0.0.1')) as Client;
    const a2 = (await connectAs(server, '10.0.0.1')) as Client;
    await ready(a1);
    await ready(a2);
    expect(await connectAs(server, '10.0.0.1')).toBe(429);
    // The same client opening and closing connections as fast as it can runs out of its connect budget (10 at
    // once, then 40 a minute) and is refused with 429; it never holds more than its two sessions.
    const statuses: number[] = [];
    for (let i = 0; i < 200; i++) {
      const r = await connectAs(server, '10.0.0.1');
      if (typeof r === 'number') statuses.push(r);
      else r.ws.terminate();
      expect(server.sessions).toBeLessThanOrEqual(2);
    }
    expect(statuses.length).toBe(200);
    expect(new Set(statuses)).toEqual(new Set([429]));
    // Another client is served all along.
    const b = (await connectAs(server, '10.0.0.2')) as Client;
    await ready(b);
    b.ws.close();
    a1.ws.close();
    a2.ws.close();
    await waitFor(() => server!.sessions === 0);
  });

  it('serves only its own host names (no DNS rebinding) and its own origin', async () => {
    const { factory } = fakeFactory();
    server = await startWebServer({ factory, allowedHosts: ['agent.example'] });
    const port = server.port;
    // A rebinding page: the attacker's name in Host and Origin alike.
    await expect(
      connect(server, { host: `evil.example:${port}`, origin: `http://evil.example:${port}` }),
    ).rejects.toThrow(/403/);
    expect(await statusAs(server, `evil.example:${port}`)).toBe(421);
    // Our own name (listed), and the loopback address, are served; another site's page on our name is not.
    const ok = await connect(server, { host: `agent.example:${port}`, origin: `http://agent.example:${port}` });
    await ready(ok);
    ok.ws.close();
    await expect(connect(server, { host: `agent.example:${port}`, origin: 'https://other.example' })).rejects.toThrow(
      /403/,
    );
    expect(await statusAs(server, `agent.example:${port}`)).toBe(200);
    expect(await statusAs(server, `localhost:${port}`)).toBe(200);
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
  });

  it('cuts off half-sent HTTP requests and caps connections', async () => {
    const { factory } = fakeFactory();
    const open = (port: number): Promise<{ socket: Socket; closed: Promise<void> }> =>
      new Promise((resolve, reject) => {
        const socket = tcpConnect(port, '127.0.0.1');
        const closed = new Promise<void>((r) => socket.once('close', () => r()));
        socket.on('data', () => undefined);
        socket.once('connect', () => resolve({ socket, closed }));
        socket.once('error', reject);
      });
    const within = (p: Promise<void>, ms: number) =>
      Promise.race([p.then(() => 'closed'), sleep(ms).then(() => 'held')]);

    // Headers that never end: closed by the server after its headers timeout, not held.
    server = await startWebServer({ factory, headersTimeoutMs: 300, requestTimeoutMs: 300 });
    const slow = await open(server.port);
    slow.socket.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1');
    expect(await within(slow.closed, 8000)).toBe('closed');
    await server.close();

    // Three connections held open (well within their timeouts); a fourth is dropped at once; after they go,
    // the server answers again.
    server = await startWebServer({ factory, maxConnections: 3 });
    const held = await Promise.all([open(server.port), open(server.port), open(server.port)]);
    const extra = await open(server.port);
    expect(await within(extra.closed, 3000)).toBe('closed');
    expect(await within(held[0]!.closed, 100)).toBe('held');
    for (const h of held) h.socket.destroy();
    await waitFor(async () => (await fetch(`${server!.url}/healthz`).catch(() => undefined))?.status === 200, {
      message: 'served again',
    });
  });
});
