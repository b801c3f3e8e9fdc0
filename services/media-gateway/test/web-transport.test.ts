import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { connect, errors, fakeFactory, marker, pcm, sleep } from './web-client.js';
import { ActorHost } from '@va/actor';
import { Bus } from '@va/bus';
import { CANCEL_REASON, channels, sessionId as parseSessionId, type SessionId } from '@va/protocol';
import { startNatsServer, waitFor, type NatsServerHandle } from '@va/testkit';
import { CLOSE, startWebServer, type WebServer } from '../src/web/server.js';
import { Admission } from '../src/admission.js';
import { AgentStore } from '@va/agents';
import { ResumeTokens } from '../src/web/resume-token.js';
import { busSessionFactory } from '../src/web/session.js';

let server: WebServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

describe('web transport', () => {
  it('serves the talk page, its script and the worklet, and nothing else', async () => {
    server = await startWebServer({ factory: fakeFactory().factory });
    const page = await fetch(`${server.url}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toContain('text/html');
    const html = await page.text();
    expect(html).toContain('/app.js');
    for (const file of ['/app.js', '/mic-worklet.js']) {
      const res = await fetch(`${server.url}${file}`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toContain('javascript');
    }
    expect(await (await fetch(`${server.url}/mic-worklet.js`)).text()).toContain("registerProcessor('mic-16k'");
    expect((await fetch(`${server.url}/../package.json`)).status).toBe(404);
    expect((await fetch(`${server.url}/server.ts`)).status).toBe(404);
  });

  it('feeds 1 s of microphone to the session in real time, in order, and sends the agent frames back', async () => {
    const { factory, sessions } = fakeFactory();
    server = await startWebServer({ factory });
    const c = await connect(server);
    await waitFor(() => c.events.some((e) => e.type === 'ready'), { message: 'ready' });
    // 50 frames of 20 ms, frame k filled with 100 * (k + 1), sent as 30 ms chunks every 30 ms (not frame-aligned).
    const stream = new Int16Array(50 * 320);
    for (let k = 0; k < 50; k++) stream.fill(100 * (k + 1), k * 320, (k + 1) * 320);
    for (let at = 0; at < stream.length; at += 480) {
      c.ws.send(pcm(stream.subarray(at, at + 480)));
      await sleep(30);
    }
    const session = sessions[0]!;
    await waitFor(() => session.ticks.filter((t) => marker(t.frame) !== undefined).length === 50, {
      message: 'all 50 frames ticked',
    });
    const marked = session.ticks.filter((t) => marker(t.frame) !== undefined);
    expect(marked.map((t) => marker(t.frame))).toEqual(Array.from({ length: 50 }, (_, k) => 100 * (k + 1)));
    // Paced by the clock: tick k never comes before k × 20 ms (a loaded machine only makes ticks later).
    expect(session.ticks.filter((t, k) => t.at - session.ticks[0]!.at < k * 20 - 2)).toEqual([]);
    // Ticks with no microphone got comfort noise, not digital zero and not a repeat.
    expect(session.ticks.some((t) => marker(t.frame) === undefined && t.frame.some((s) => s !== 0))).toBe(true);

    await waitFor(() => c.audio.length === 50, { message: 'agent frames back' });
    expect(c.audio.map((f) => f.length)).toEqual(Array(50).fill(320));
    expect(c.audio.map((f) => f[0])).toEqual(Array.from({ length: 50 }, (_, k) => -100 * (k + 1)));

    // Events the session emits reach the page as JSON.
    session.emit({ type: 'transcript', text: 'hello there', final: true, startMs: 0, endMs: 900 });
    session.emit({ type: 'reply', source: 'fast', turnId: 't1', text: 'Sure.' });
    session.emit({
      type: 'playout',
      turnId: 't1',
      spokenText: 'Sure.',
      playedMs: 400,
      interrupted: false,
      e2eMs: 420,
      timeline: null,
      traceId: null,
      traceUrl: null,
    });
    await waitFor(() => c.events.length >= 4);
    expect(c.events.map((e) => e.type)).toEqual(['ready', 'transcript', 'reply', 'playout']);
    expect(c.events[3]).toMatchObject({ e2eMs: 420 });

    // Closing the socket closes the session and stops its clock.
    c.ws.close();
    await waitFor(() => session.closed && server!.sessions === 0, { message: 'session closed' });
    const ticks = session.ticks.length;
    await sleep(100);
    expect(session.ticks.length).toBe(ticks);
  });

  it('paces a burst at real time, and drops the oldest audio beyond the queue bound', async () => {
    const { factory, sessions } = fakeFactory();
    server = await startWebServer({ factory, maxQueueMs: 200 });
    const c = await connect(server);
    await waitFor(() => c.events.some((e) => e.type === 'ready'));
    const burst = new Int16Array(50 * 320);
    for (let k = 0; k < 50; k++) burst.fill(100 * (k + 1), k * 320, (k + 1) * 320);
    c.ws.send(pcm(burst));
    const session = sessions[0]!;
    await waitFor(() => session.ticks.some((t) => marker(t.frame) === 5000), { message: 'last frame ticked' });
    await sleep(100);
    const marked = session.ticks.filter((t) => marker(t.frame) !== undefined);
    // Only the newest 200 ms (10 frames) were kept, in order, and played one per clock tick (not all at once).
    expect(marked.map((t) => marker(t.frame))).toEqual(Array.from({ length: 10 }, (_, k) => 100 * (41 + k)));
    const first = session.ticks.indexOf(marked[0]!);
    expect(marked.map((t) => session.ticks.indexOf(t) - first)).toEqual(Array.from({ length: 10 }, (_, k) => k));
    c.ws.close();
    await waitFor(() => server!.sessions === 0);
  });

  it('refuses oversize, text and odd-length messages with an error and goes on', async () => {
    const { factory, sessions } = fakeFactory();
    server = await startWebServer({ factory, maxMessageBytes: 4096 });
    const c = await connect(server);
    await waitFor(() => c.events.some((e) => e.type === 'ready'));
    c.ws.send(Buffer.alloc(8192));
    c.ws.send(Buffer.alloc(641));
    await waitFor(() => errors(c).length === 2, { message: 'two errors' });
    // The same kind of error is told at most once a second: a flood of bad frames is not answered frame by frame.
    c.ws.send('{"hello":');
    await sleep(1100);
    c.ws.send('{"hello":');
    await waitFor(() => errors(c).length === 3, { message: 'three errors' });
    expect(errors(c).map((e) => (e as { code: string }).code)).toEqual(['bad-message', 'bad-audio', 'bad-message']);
    expect(errors(c)[0]).toMatchObject({ message: expect.stringContaining('4096') });
    expect(errors(c)[2]).toMatchObject({ message: expect.stringContaining('text messages') });
    // Still alive: the next good frame is played.
    c.ws.send(pcm(new Int16Array(320).fill(777)));
    await waitFor(() => sessions[0]!.ticks.some((t) => marker(t.frame) === 777), { message: 'good frame after bad' });
    // Far beyond the limit: ws cuts the socket (1009) without buffering it; the server lives on.
    const big = await connect(server);
    big.ws.send(Buffer.alloc(4096 * 4 + 2));
    expect(await big.closed).toBe(1009);
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    c.ws.close();
    await waitFor(() => server!.sessions === 0);
    expect(sessions.every((s) => s.closed)).toBe(true);
  });

  it('bounds sessions, refuses other sites and other paths, and reports a session that fails to open', async () => {
    const { factory } = fakeFactory();
    server = await startWebServer({ factory, maxSessions: 1 });
    const a = await connect(server);
    const b = await connect(server);
    expect(await b.closed).toBe(CLOSE.overloaded);
    expect(errors(b)[0]).toMatchObject({ code: 'overloaded' });
    a.ws.close();
    await waitFor(() => server!.sessions === 0);
    await expect(connect(server, { origin: 'https://evil.example' })).rejects.toThrow(/403/);
    await expect(
      new Promise((resolve, reject) => {
        const ws = new WebSocket(`${server!.url.replace('http', 'ws')}/other`);
        ws.once('open', resolve);
        ws.once('error', reject);
      }),
    ).rejects.toThrow(/404/);
    await server.close();

    server = await startWebServer({
      factory: async () => {
        throw new Error('no bus');
      },
    });
    const c = await connect(server);
    expect(await c.closed).toBe(CLOSE.internal);
    expect(errors(c)[0]).toMatchObject({ code: 'internal' });
    await waitFor(() => server!.sessions === 0);
  });
});

describe('web transport on the bus', () => {
  let nats: NatsServerHandle;
  let bus: Bus;
  let client: Bus;

  beforeAll(async () => {
    nats = await startNatsServer();
    bus = await Bus.connect({ stage: 'media-gateway', servers: nats.url });
    client = await Bus.connect({ stage: 'test-client', servers: nats.url });
  });
  afterAll(async () => {
    await server?.close();
    await bus?.drain();
    await client?.drain();
    await nats?.stop();
  });

  it('opens a session per socket, publishes the microphone, forwards the transcript and the words played, closes it', async () => {
    const opened: string[] = [];
    const closed: string[] = [];
    client.subscribeGlobal(channels.sessionOpen, (m) => void opened.push(m.sessionId));
    client.subscribeGlobal(channels.sessionClose, (m) => void closed.push(m.sessionId));
    await client.nc.flush();
    server = await startWebServer({
      // No stage required: this test is about the transport (admission has its own test).
      factory: busSessionFactory(bus, {
        admission: new Admission(bus, { stages: [], openTimeoutMs: 200, log: bus.log }),
        traceUrl: 'http://grafana.test/trace/{traceId}',
      }),
    });
    const c = await connect(server);
    const ready = await waitFor(() => c.events.find((e) => e.type === 'ready'), { message: 'ready' });
    const sid: SessionId = parseSessionId((ready as { sessionId: string }).sessionId);
    expect(opened).toContain(sid);

    const heard: number[] = [];
    client.subscribeAudio('in', sid, (f) => void heard.push(f.samples[0]!));
    await client.nc.flush();
    c.ws.send(pcm(new Int16Array(640).fill(1234)));
    await waitFor(() => heard.filter((v) => v === 1234).length === 2, { message: 'mic frames on the bus' });

    client.publish(channels.transcript, sid, {
      text: 'what time is it',
      final: true,
      stable: true,
      confidence: 0.9,
      startMs: 0,
      endMs: 800,
    });
    const turn = { turnId: 't1', text: 'what time is it', eouProb: 0.9, speechEndMs: 0 };
    client.publish(channels.turn, sid, { ...turn, kind: 'end' });
    await client.nc.flush();
    await sleep(50); // as in the pipeline, the turn's end reaches the gateway before its audio (tts waits for it)
    // The agent's voice: each frame carries its words; the page gets them as the frame is played (captions).
    const agentFrame = (turnId: string, source: 'fast' | 'deep', seq: number, text: string) =>
      client.publishAudio('out', sid, {
        samples: new Int16Array(320).fill(500),
        sampleRate: 16000,
        seq,
        tsMs: seq * 20,
        turnId,
        source,
        textOffset: text.length,
        text,
      });
    agentFrame('t1', 'fast', 0, 'Let me see.');
    await waitFor(() => c.events.some((e) => e.type === 'reply'), { message: 'the opener played on the page' });
    // The user talks over the agent; the turn is then cancelled: what was heard is the one frame played.
    client.publish(channels.turn, sid, { ...turn, kind: 'barge-in' });
    await client.nc.flush();
    await waitFor(() => c.events.some((e) => e.type === 'flush'), { message: 'flush on barge-in' });
    client.publish(channels.control, sid, { kind: 'cancel', turnId: 't1', reason: 'barge-in' });
    await waitFor(() => c.events.some((e) => e.type === 'playout'), { message: 'the turn played' });
    expect(c.events.slice(1)).toEqual([
      { type: 'transcript', text: 'what time is it', final: true, startMs: 0, endMs: 800 },
      { type: 'reply', source: 'fast', turnId: 't1', text: 'Let me see.' },
      { type: 'flush', turnId: 't1' },
      {
        type: 'playout',
        turnId: 't1',
        spokenText: 'Let me see.',
        playedMs: 20,
        interrupted: true,
        e2eMs: expect.any(Number),
        // When the turn's outputs reached the gateway; the answer never came.
        timeline: {
          turnEndMs: expect.any(Number),
          audioReadyMs: expect.any(Number),
          answerAudioMs: null,
          playedMs: expect.any(Number),
        },
        traceId: expect.stringMatching(/^[0-9a-f]{32}$/),
        traceUrl: `http://grafana.test/trace/${traceIdOf(c.events)}`,
      },
    ]);

    // A preview (its audio held until committed), then abandoned (the user went on): never played, never shown.
    const preview = { turnId: 't2', text: 'and then', eouProb: 0.6, speechEndMs: 900 };
    client.publish(channels.turn, sid, { ...preview, kind: 'preview' });
    await client.nc.flush();
    await sleep(50);
    agentFrame('t2', 'fast', 1, 'Sure.');
    await client.nc.flush();
    await sleep(50);
    // The session's clock ticks on (comfort noise for the microphone): the held frame stays unplayed.
    const ticked = heard.length;
    await waitFor(() => heard.length >= ticked + 3, { message: 'more ticks' });
    client.publish(channels.control, sid, { kind: 'cancel', turnId: 't2', reason: CANCEL_REASON.preemptAbandoned });
    await client.nc.flush();
    await waitFor(() => heard.length >= ticked + 6, { message: 'ticks after the cancel' });
    expect(c.events.filter((e) => (e as { turnId?: string }).turnId === 't2')).toEqual([]);
    expect(c.audio.filter((f) => f[0] === 500)).toHaveLength(1); // t1's one frame, not t2's

    c.ws.close();
    await waitFor(() => closed.includes(sid) && server!.sessions === 0, { message: 'session closed on the bus' });
  });

  it('opens each session as the agent the page names (or the stored default); an unknown agent is refused', async () => {
    const configs = new Map<string, unknown>();
    client.subscribeGlobal(channels.sessionOpen, (m) => void configs.set(m.sessionId, m.config));
    await client.nc.flush();
    const writer = new AgentStore(client, { create: true });
    await writer.put({
      name: 'concierge',
      instructions: 'You book tables.',
      persona: 'Camille',
      turn: { maxDelayMs: 900 },
    });
    server = await startWebServer({
      factory: busSessionFactory(bus, {
        admission: new Admission(bus, { stages: [], openTimeoutMs: 200, log: bus.log }),
        agents: new AgentStore(bus),
      }),
    });
    // The config a connection's session was opened with; the connection is closed then (two per client at most).
    const sessionOf = async (c: Awaited<ReturnType<typeof connect>>) => {
      const ready = await waitFor(() => c.events.find((e) => e.type === 'ready'), { message: 'ready' });
      const sid = (ready as { sessionId: string }).sessionId;
      const config = await waitFor(() => configs.get(sid) as Record<string, unknown> | undefined, {
        message: 'session.open',
      });
      c.ws.close();
      await c.closed;
      return config;
    };
    // The page names its agent: the profile goes to every stage, its persona and turn-taking with it.
    const named = await connect(server, {}, '?agent=concierge');
    expect(await sessionOf(named)).toMatchObject({
      agent: { name: 'concierge', version: 1, instructions: 'You book tables.' },
      persona: 'Camille',
      turn: { maxDelayMs: 900 },
    });
    // None named and no `default` stored: the stages' built-in agent.
    expect(await sessionOf(await connect(server))).not.toHaveProperty('agent');
    await writer.put({ name: 'default', instructions: 'Be brief.' });
    expect(await sessionOf(await connect(server))).toMatchObject({ agent: { name: 'default' } });
    // An agent nobody stored: told why, closed with 1008 (the page does not come back for it), nothing opened.
    const opensBefore = configs.size;
    const unknown = await connect(server, {}, '?agent=nobody');
    expect(await unknown.closed).toBe(CLOSE.badMessage);
    expect(errors(unknown)).toEqual([{ type: 'error', code: 'unknown-agent', message: 'no agent named "nobody"' }]);
    expect(configs.size).toBe(opensBefore);
  });

  it('a lost socket is resumed with its token on another instance; a forged token is refused; one not resumed in time is closed', async () => {
    const closed: string[] = [];
    client.subscribeGlobal(channels.sessionClose, (m) => void closed.push(m.sessionId));
    await client.nc.flush();
    const secret = 'web-transport-test-secret';
    // A stage holding the sessions (a resume is refused for a session no stage holds any more).
    const stageBus = await Bus.connect({ stage: 'turn-detector', servers: nats.url });
    const stage = new ActorHost({ stage: 'turn-detector', bus: stageBus, createActor: async () => ({}) });
    await stage.start();
    const factory = (graceMs: number) =>
      busSessionFactory(bus, {
        admission: new Admission(bus, { stages: ['turn-detector'], openTimeoutMs: 2000, log: bus.log }),
        resumeTokens: new ResumeTokens(secret, 60_000),
        resumeGraceMs: graceMs,
      });
    // Two instances sharing the secret: one serves the page until its socket is lost.
    server = await startWebServer({ factory: factory(60_000) });
    const other = await startWebServer({ factory: factory(60_000) });
    try {
      const c = await connect(server);
      const ready = (await waitFor(() => c.events.find((e) => e.type === 'ready'))) as {
        sessionId: string;
        resumeToken: string;
        resumed: boolean;
      };
      expect(ready.resumed).toBe(false);
      const sid = parseSessionId(ready.sessionId);
      const heard: number[] = [];
      client.subscribeAudio('in', sid, (f) => void heard.push(f.tsMs));
      await client.nc.flush();
      await waitFor(() => heard.length > 5);
      c.ws.terminate(); // no closing handshake: lost, not hung up
      await waitFor(() => server!.sessions === 0);
      await sleep(100);
      expect(closed).not.toContain(sid);

      // A forged token (another session's id under this one's signature) is refused, and the page is told.
      const [, expiry, signature] = ready.resumeToken.split('.');
      const forged = await connect(other, {}, `?resume=${encodeURIComponent(`web-other-1.${expiry}.${signature}`)}`);
      expect(await forged.closed).toBe(CLOSE.badMessage);
      expect(errors(forged)[0]).toMatchObject({ code: 'resume-refused' });

      // The real token on the other instance: the same session, its clock going on from where it was.
      const before = heard[heard.length - 1]!;
      const back = await connect(other, {}, `?resume=${encodeURIComponent(ready.resumeToken)}`);
      const resumed = (await waitFor(() => back.events.find((e) => e.type === 'ready'))) as typeof ready;
      expect(resumed).toMatchObject({ sessionId: sid, resumed: true });
      await waitFor(() => heard[heard.length - 1]! > before + 100);
      // The first instance's grace runs out later: the session is held elsewhere, so it does not close it.
      back.ws.close(1000, 'user stopped');
      await waitFor(() => closed.includes(sid), { message: 'hung up: closed on the bus' });
    } finally {
      await other.close();
    }

    // Lost and never resumed: closed when the grace period ends.
    await server.close();
    server = await startWebServer({ factory: factory(300) });
    const lost = await connect(server);
    const lostReady = (await waitFor(() => lost.events.find((e) => e.type === 'ready'))) as { sessionId: string };
    lost.ws.terminate();
    await sleep(150);
    expect(closed).not.toContain(lostReady.sessionId);
    await waitFor(() => closed.includes(lostReady.sessionId), { message: 'closed after the grace period' });
    await stage.drain();
    await stageBus.drain();
  });
});

function traceIdOf(events: { type: string }[]): string | undefined {
  return (events.find((e) => e.type === 'playout') as { traceId?: string } | undefined)?.traceId;
}
