import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { detachedActorContext } from '@va/testkit';
import { Bus } from '@va/bus';
import { closeSession, stateKey } from '@va/actor';
import {
  AUDIO_REPLAY_MAX_BYTES,
  BUCKETS,
  channels,
  ErrorEvent,
  sessionId,
  sessionRequests,
  subjects,
  type Playout,
  type SessionId,
} from '@va/protocol';
import { ATTR, contextOf, EVENT, shutdownTelemetry, SPAN, startStageSpan, startTelemetry } from '@va/telemetry';
import { startNatsServer, startOtlpReceiver, waitFor, type NatsServerHandle, type OtlpReceiver } from '@va/testkit';
import { GatewaySession } from '../src/actor.js';
import { forgetClosedSessions } from '../src/open-session.js';

let nats: NatsServerHandle;
let bus: Bus;
let client: Bus;
let otlp: OtlpReceiver;

beforeAll(async () => {
  otlp = await startOtlpReceiver();
  startTelemetry({ serviceName: 'media-gateway', endpoint: otlp.endpoint, spanExportDelayMs: 50 });
  nats = await startNatsServer();
  bus = await Bus.connect({ stage: 'media-gateway', servers: nats.url });
  client = await Bus.connect({ stage: 'test-client', servers: nats.url });
});

afterAll(async () => {
  await bus?.drain();
  await client?.drain();
  await nats?.stop();
  await shutdownTelemetry();
  await otlp?.stop();
});

async function gateway(id: string): Promise<{ sid: SessionId; session: GatewaySession; playouts: Playout[] }> {
  const sid = sessionId(id);
  const ctx = await detachedActorContext(bus, sid, 'media-gateway');
  const session = new GatewaySession(ctx, 16000);
  const playouts: Playout[] = [];
  client.subscribe(channels.playout, sid, (p) => void playouts.push(p));
  await Promise.all([bus.nc.flush(), client.nc.flush()]);
  return { sid, session, playouts };
}

const mic = () => new Int16Array(320);
const frame = (value: number) => new Int16Array(320).fill(value);

/** Sends a turn the way the stages would: vad start, turn end, the opener's and the answer's audio. */
async function agentTurn(
  sid: SessionId,
  turnId: string,
  fast: { text: string; offsets: number[] },
  deep: { text: string; offsets: number[] },
) {
  client.publish(channels.vad, sid, { kind: 'start', atMs: 0 });
  client.publish(channels.turn, sid, {
    turnId,
    kind: 'end',
    text: 'what is the answer',
    eouProb: 0.9,
    speechEndMs: 40,
  });
  await client.nc.flush();
  await new Promise((r) => setTimeout(r, 30));
  let seq = 0;
  for (const [source, part] of [
    ['fast', fast],
    ['deep', deep],
  ] as const) {
    let from = 0;
    for (const offset of part.offsets) {
      // As tts sends them: each frame carries the words its audio brings in.
      const text = part.text.slice(from, offset);
      from = offset;
      client.publishAudio('out', sid, {
        samples: frame(source === 'fast' ? 1000 : 2000),
        sampleRate: 16000,
        seq,
        tsMs: seq * 20,
        turnId,
        source,
        textOffset: offset,
        text,
      });
      seq++;
    }
    client.publish(channels.speech, sid, {
      turnId,
      source,
      text: part.text,
      frames: part.offsets.length,
      skipped: false,
    });
  }
  await client.nc.flush();
}

/** A committed turn whose opener is empty (its fast source done): only the answer's frames play. */
async function answerOnlyTurn(sid: SessionId, turnId: string): Promise<void> {
  client.publish(channels.vad, sid, { kind: 'start', atMs: 0 });
  client.publish(channels.turn, sid, { turnId, kind: 'end', text: 'count', eouProb: 0.9, speechEndMs: 40 });
  await client.nc.flush();
  await new Promise((r) => setTimeout(r, 30));
  client.publish(channels.speech, sid, { turnId, source: 'fast', text: '', frames: 0, skipped: false });
}

/** One frame of a turn's answer (every sample `value`), bringing in `text` and reaching `textOffset`. */
function answerFrame(sid: SessionId, turnId: string, value: number, seq: number, textOffset: number, text: string) {
  client.publishAudio('out', sid, {
    samples: frame(value),
    sampleRate: 16000,
    seq,
    tsMs: seq * 20,
    turnId,
    source: 'deep',
    textOffset,
    text,
  });
}

/** A one-frame answer ("Ok"), all of its source sent. */
function oneAnswerFrame(sid: SessionId, turnId: string): void {
  client.publishAudio('out', sid, {
    samples: frame(5),
    sampleRate: 16000,
    seq: 0,
    tsMs: 0,
    turnId,
    source: 'deep',
    textOffset: 2,
    text: 'Ok',
  });
  client.publish(channels.speech, sid, { turnId, source: 'deep', text: 'Ok', frames: 1, skipped: false });
}

/** Ticks until the gateway has something to play (the frames travel over NATS first). */
async function firstFrame(session: GatewaySession): Promise<Int16Array> {
  return waitFor(() => session.tick(mic()), { message: 'agent audio to play' });
}

describe('media-gateway session', () => {
  it('plays the opener then the answer in real-time ticks and reports what was spoken', async () => {
    const { sid, session, playouts } = await gateway('gw-play');
    await agentTurn(
      sid,
      'p1',
      { text: 'Sure.', offsets: [2, 5] },
      { text: 'The answer is forty two.', offsets: [10, 24] },
    );
    const played = [await firstFrame(session), session.tick(mic()), session.tick(mic()), session.tick(mic())];
    expect(played.map((f) => f?.[0])).toEqual([1000, 1000, 2000, 2000]);
    expect(session.tick(mic())).toBeUndefined();
    await waitFor(() => playouts.length === 1);
    expect(playouts[0]).toEqual({
      turnId: 'p1',
      playedMs: 80,
      spokenText: 'Sure. The answer is forty two.',
      done: true,
      interrupted: false,
    });
    expect(session.records[0]).toMatchObject({
      turnId: 'p1',
      interrupted: false,
      userText: 'what is the answer',
      speechEndMs: 40,
    });
    // The latency breakdown: when the turn's outputs arrived, on the session clock, after the speech end.
    // The first audio (and the answer's) arrived before the first tick played it.
    const { timeline, e2eMs } = session.records[0]!;
    expect(timeline).toEqual({
      turnEndMs: expect.any(Number),
      audioReadyMs: expect.any(Number),
      answerAudioMs: expect.any(Number),
      playedMs: e2eMs,
    });
    expect(timeline.audioReadyMs!).toBeLessThanOrEqual(timeline.answerAudioMs!);
    expect(timeline.answerAudioMs!).toBeLessThanOrEqual(timeline.playedMs!);
    expect(session.segments.map((s) => s.source)).toEqual(['fast', 'deep']);
    expect(session.idle).toBe(true);
  });

  it('pauses within one frame on barge-in, flushes on the cancel, and keeps only what was heard', async () => {
    const { sid, session, playouts } = await gateway('gw-barge');
    await agentTurn(
      sid,
      'b1',
      { text: 'Sure.', offsets: [5] },
      { text: 'The answer is forty two.', offsets: [4, 8, 14, 24] },
    );
    await firstFrame(session);
    expect(session.tick(mic())?.[0]).toBe(2000); // "The " heard
    // Tick only once the gateway's connection has the barge-in (polling with ticks would play on meanwhile).
    let bargeInSeen = false;
    const probe = bus.subscribe(channels.turn, sid, (t) => void (bargeInSeen ||= t.kind === 'barge-in'));
    await bus.nc.flush();
    client.publish(channels.turn, sid, { turnId: 'b1', kind: 'barge-in', text: '', eouProb: 0, speechEndMs: 20 });
    await client.nc.flush();
    await waitFor(() => bargeInSeen, { message: 'barge-in at the gateway' });
    await new Promise((r) => setImmediate(r));
    probe.unsubscribe();
    expect(session.tick(mic())).toBeUndefined(); // paused: silence from the next frame on
    expect(playouts).toEqual([]); // the rest is kept aside until words decide
    client.publish(channels.control, sid, { kind: 'cancel', turnId: 'b1', reason: 'barge-in' });
    await waitFor(() => playouts.length === 1);
    expect(session.tick(mic())).toBeUndefined();
    expect(playouts[0]).toMatchObject({
      turnId: 'b1',
      spokenText: 'Sure. The',
      interrupted: true,
      done: true,
      playedMs: 40,
    });
    const record = session.records.find((r) => r.turnId === 'b1')!;
    expect(record).toMatchObject({ interrupted: true, bargeInAtMs: 20, resumes: 0 });
    expect(record.lastAudioMs! - record.bargeInAtMs!).toBeLessThanOrEqual(60);
    expect(session.idle).toBe(true);
  });

  it('resumes after a false interruption from the first unplayed frame: nothing heard twice', async () => {
    const { sid, session, playouts } = await gateway('gw-resume');
    const offsets = [4, 8, 14, 19, 24, 27];
    await agentTurn(sid, 'c1', { text: '', offsets: [] }, { text: 'one two three four five six', offsets });
    const heard: number[] = [];
    const play = (f: Int16Array | undefined) => (f ? heard.push(f[0]!) : undefined);
    play(await firstFrame(session));
    play(session.tick(mic()));
    client.publish(channels.turn, sid, { turnId: 'c1', kind: 'barge-in', text: '', eouProb: 0, speechEndMs: 40 });
    await client.nc.flush();
    // Until the pause arrives the answer plays on (and is heard); from then on, silence.
    await waitFor(() => play(session.tick(mic())) === undefined);
    for (let i = 0; i < 5; i++) expect(session.tick(mic())).toBeUndefined(); // the cough: silence
    client.publish(channels.turn, sid, { turnId: 'c1', kind: 'resume', text: '', eouProb: 0, speechEndMs: 300 });
    await client.nc.flush();
    await waitFor(() => {
      play(session.tick(mic()));
      return playouts.length === 1;
    });
    // Every frame of the answer played exactly once, in order: 6 frames, none repeated, none lost.
    expect(heard).toHaveLength(6);
    expect(playouts[0]).toMatchObject({ interrupted: false, spokenText: 'one two three four five six' });
    expect(session.records.find((r) => r.turnId === 'c1')).toMatchObject({ resumes: 1, bargeInAtMs: null });
    const root = await otlp.waitForSpans((all) =>
      all.some((s) => s.name === SPAN.turn && s.attributes[ATTR.turnId] === 'c1'),
    );
    const events = root.find((s) => s.name === SPAN.turn && s.attributes[ATTR.turnId] === 'c1')!.events;
    // (A slow machine may add budget_exceeded notes beside the story.)
    expect(events.map((e) => e.name).filter((n) => n !== EVENT.budgetExceeded)).toEqual([EVENT.bargeIn, EVENT.resume]);
  });

  it('holds a preview turn’s audio until the turn is committed, and drops a cancelled preview unplayed', async () => {
    const { sid, session, playouts } = await gateway('gw-preview');
    const send = (turnId: string, value: number, text: string, seq: number) =>
      answerFrame(sid, turnId, value, seq, text.length, text);
    client.publish(channels.vad, sid, { kind: 'start', atMs: 0 });
    const turn = (turnId: string, kind: 'preview' | 'end', text: string) =>
      client.publish(channels.turn, sid, { turnId, kind, text, eouProb: 0.9, speechEndMs: 40 });
    // A preview that the user's words did not confirm: its audio never plays.
    turn('v1', 'preview', 'what time');
    await client.nc.flush();
    await new Promise((r) => setTimeout(r, 30));
    send('v1', 111, 'It', 0);
    await client.nc.flush();
    await new Promise((r) => setTimeout(r, 30));
    for (let i = 0; i < 3; i++) expect(session.tick(mic())).toBeUndefined();
    client.publish(channels.control, sid, { kind: 'cancel', turnId: 'v1', reason: 'preempt-mismatch' });
    // The next preview is committed: what it made while held plays, once.
    turn('v2', 'preview', 'what time is it');
    await client.nc.flush();
    await new Promise((r) => setTimeout(r, 30));
    send('v2', 222, 'Ten', 0);
    client.publish(channels.speech, sid, { turnId: 'v2', source: 'fast', text: '', frames: 0, skipped: true });
    client.publish(channels.speech, sid, { turnId: 'v2', source: 'deep', text: 'Ten.', frames: 1, skipped: false });
    await client.nc.flush();
    await new Promise((r) => setTimeout(r, 30));
    expect(session.tick(mic())).toBeUndefined(); // held: not committed yet
    turn('v2', 'end', 'what time is it');
    const played = await firstFrame(session);
    expect(played[0]).toBe(222);
    expect(session.tick(mic())).toBeUndefined();
    await waitFor(() => playouts.length === 1);
    expect(playouts[0]).toMatchObject({ turnId: 'v2', spokenText: 'Ten', interrupted: false });
    expect(session.records.map((r) => r.turnId)).toEqual(['v2']);
  });

  it('plays an agent turn (a greeting) as a turn of its own: heard, recorded, no voice-to-voice latency', async () => {
    const { sid, session, playouts } = await gateway('gw-greet');
    client.publish(channels.turn, sid, { turnId: 'h1', kind: 'agent', text: 'Hello.', eouProb: 1, speechEndMs: 0 });
    await client.nc.flush();
    await new Promise((r) => setTimeout(r, 30));
    for (const [i, text] of ['Hel', 'lo.'].entries()) {
      client.publishAudio('out', sid, {
        samples: frame(3000),
        sampleRate: 16000,
        seq: i,
        tsMs: i * 20,
        turnId: 'h1',
        source: 'deep',
        textOffset: 3 * (i + 1),
        text,
      });
    }
    client.publish(channels.speech, sid, { turnId: 'h1', source: 'fast', text: '', frames: 0, skipped: false });
    client.publish(channels.speech, sid, { turnId: 'h1', source: 'deep', text: 'Hello.', frames: 2, skipped: false });
    await firstFrame(session);
    session.tick(mic());
    await waitFor(() => playouts.length === 1);
    expect(playouts[0]).toMatchObject({ turnId: 'h1', spokenText: 'Hello.', interrupted: false });
    expect(session.records[0]).toMatchObject({ turnId: 'h1', userText: '', e2eMs: null, spokenText: 'Hello.' });
    const spans = await otlp.waitForSpans((all) =>
      all.some((s) => s.name === SPAN.turn && s.attributes[ATTR.turnId] === 'h1'),
    );
    const root = spans.find((s) => s.name === SPAN.turn && s.attributes[ATTR.turnId] === 'h1')!;
    expect(root.attributes[ATTR.greeting]).toBe(true);
    expect(root.attributes[ATTR.e2eMs]).toBeUndefined();
    expect(session.idle).toBe(true);
  });

  it('drops the words a tts successor speaks again (it resumed from an older record): each heard once', async () => {
    const { sid, session, playouts } = await gateway('gw-repeat');
    const answer = 'One two. Three four.';
    await answerOnlyTurn(sid, 'r1');
    // The first tts instance sends up to offset 12 ("One two. Thr") and dies; its last progress record said 8.
    // The successor speaks on from 8: its frames up to 12 repeat, the one to 16 brings "ee f" of "Three f".
    const frames: [number, number, number][] = [
      [0, 4, 0],
      [4, 8, 1],
      [8, 12, 2],
      [8, 10, 3],
      [10, 12, 4],
      [8, 16, 5],
      [16, 20, 6],
    ];
    for (const [from, to, value] of frames) answerFrame(sid, 'r1', 100 + value, value, to, answer.slice(from, to));
    client.publish(channels.speech, sid, { turnId: 'r1', source: 'deep', text: answer, frames: 5, skipped: false });
    await client.nc.flush();
    const played = [(await firstFrame(session))[0]];
    for (let i = 0; i < 10; i++) {
      const f = session.tick(mic());
      if (f) played.push(f[0]);
    }
    await waitFor(() => playouts.length === 1);
    expect(played, 'the repeated frames (103, 104) never played').toEqual([100, 101, 102, 105, 106]);
    expect(playouts[0]).toMatchObject({ turnId: 'r1', spokenText: answer, interrupted: false });
  });

  it('resumed after its predecessor died, plays the rest of the answer that was playing (a turn it never saw end)', async () => {
    const sid = sessionId('gw-taken-over');
    const ctx = await detachedActorContext(bus, sid, 'media-gateway');
    const session = new GatewaySession(ctx, 16000, { startWall: Date.now() - 5000 });
    const playouts: Playout[] = [];
    client.subscribe(channels.playout, sid, (p) => void playouts.push(p));
    await Promise.all([bus.nc.flush(), client.nc.flush()]);
    // tts speaks on: the answer's remaining frames, then its end.
    for (const [i, [from, to]] of [
      [10, 14],
      [14, 20],
    ].entries()) {
      answerFrame(sid, 'old-1', 700 + i, 40 + i, to!, 'Paris is the capital.'.slice(from, to));
    }
    client.publish(channels.speech, sid, { turnId: 'old-1', source: 'deep', text: '', frames: 12, skipped: false });
    await client.nc.flush();
    expect((await firstFrame(session))[0]).toBe(700);
    expect(session.tick(mic())?.[0]).toBe(701);
    session.tick(mic());
    await waitFor(() => playouts.length === 1);
    expect(playouts[0]).toMatchObject({ turnId: 'old-1', spokenText: 'he capital', interrupted: false });
    const spans = await otlp.waitForSpans((all) =>
      all.some((s) => s.name === SPAN.turn && s.attributes[ATTR.turnId] === 'old-1'),
    );
    const root = spans.find((s) => s.name === SPAN.turn && s.attributes[ATTR.turnId] === 'old-1')!;
    expect(root.attributes[ATTR.takenOver]).toBe(true);
    expect(root.attributes[ATTR.e2eMs], 'no user speech seen here: no voice-to-voice latency').toBeUndefined();
    // A session opened here plays no turn it has not had.
    const fresh = await gateway('gw-not-resumed');
    oneAnswerFrame(fresh.sid, 'never-seen');
    await client.nc.flush();
    await new Promise((r) => setTimeout(r, 100));
    expect(fresh.session.tick(mic())).toBeUndefined();
  });

  it('keeps how far the turn playing was heard; a gateway resuming the session asks tts for the rest, in the turn’s trace', async () => {
    const { sid, session, playouts } = await gateway('gw-playing');
    const state = await client.kv(BUCKETS.state);
    const playing = () => state.get(stateKey('media-gateway', sid, 'playing'));
    const answer = 'One two. Three four.';
    await answerOnlyTurn(sid, 'p1');
    for (const [i, [from, to]] of [
      [0, 4],
      [4, 8],
      [8, 14],
      [14, 20],
    ].entries()) {
      answerFrame(sid, 'p1', 300 + i, i, to!, answer.slice(from, to));
    }
    await client.nc.flush();
    // Two frames played ("One two."), then the gateway dies: the record says how far it was heard.
    await firstFrame(session);
    session.tick(mic());
    await waitFor(async () => (await playing())?.json<{ heardTo: { deep: number } }>().heardTo.deep === 8, {
      message: 'how far the turn was heard, kept',
    });
    const traceparent = (await playing())!.json<{ trace: { traceparent: string } }>().trace.traceparent;

    // Another gateway takes the session up: it asks tts for the turn from offset 8 and plays what comes.
    const asked: unknown[] = [];
    client.serveSession(sessionRequests.speechReplay, sid, (req) => {
      asked.push(req);
      setTimeout(() => {
        answerFrame(sid, 'p1', 400, 0, 20, answer.slice(8, 20));
        client.publish(channels.speech, sid, { turnId: 'p1', source: 'deep', text: answer, frames: 3, skipped: false });
      }, 20);
      return { replaying: true };
    });
    await client.nc.flush();
    const ctx = await detachedActorContext(bus, sid, 'media-gateway');
    const resumed = new GatewaySession(ctx, 16000, { startWall: Date.now() - 2000 });
    expect((await firstFrame(resumed))[0]).toBe(400);
    resumed.tick(mic());
    expect(asked).toEqual([{ turnId: 'p1', from: { fast: 0, deep: 8 } }]);
    await waitFor(() => playouts.some((p) => p.spokenText === 'Three four.'), { message: 'the rest played' });
    await waitFor(async () => (await playing()) === null || (await playing())?.operation !== 'PUT', {
      message: 'the record dropped once the turn was played',
    });
    const spans = await otlp.waitForSpans((all) =>
      all.some(
        (s) => s.name === SPAN.turn && s.attributes[ATTR.takenOver] === true && s.attributes[ATTR.turnId] === 'p1',
      ),
    );
    const takenUp = spans.find(
      (s) => s.name === SPAN.turn && s.attributes[ATTR.takenOver] === true && s.attributes[ATTR.turnId] === 'p1',
    )!;
    expect(traceparent.split('-')[1], 'the turn stays one trace').toBe(takenUp.traceId);
  });

  it('forgets its state of a session closed elsewhere (an orphan the turn detector closed)', async () => {
    const sid = sessionId('gw-orphan-closed');
    const state = await client.kv(BUCKETS.state);
    for (const name of ['gateway', 'playing']) await state.put(stateKey('media-gateway', sid, name), '{}');
    const following = await forgetClosedSessions(bus);
    await bus.nc.flush();
    try {
      closeSession(client, sid, 'gateway gone');
      await waitFor(
        async () =>
          (await Promise.all(['gateway', 'playing'].map((n) => state.get(stateKey('media-gateway', sid, n))))).every(
            (e) => !e || e.operation !== 'PUT',
          ),
        { message: 'the gateway state of the closed session deleted' },
      );
    } finally {
      following.unsubscribe();
    }
  });

  it('answers bad input with error events and keeps working', async () => {
    const { sid, session, playouts } = await gateway('gw-bad');
    const errors: ErrorEvent[] = [];
    client.subscribeRaw(subjects.error(sid), (m) => void errors.push(ErrorEvent.parse(m.json())));
    await client.nc.flush();
    for (const ch of [channels.vad, channels.turn, channels.speech, channels.control]) {
      client.nc.publish(ch.subject(sid), new TextEncoder().encode('{"kind": 42}'));
    }
    client.nc.publish(subjects.audioOut(sid), new Uint8Array(3));
    await waitFor(() => errors.length >= 5);
    expect(errors.every((e) => e.stage === 'media-gateway')).toBe(true);
    expect(errors.some((e) => e.code === 'bad-audio')).toBe(true);

    await agentTurn(sid, 'g1', { text: 'Ok.', offsets: [3] }, { text: 'Done.', offsets: [5] });
    await firstFrame(session);
    session.tick(mic());
    await waitFor(() => playouts.length === 1);
    expect(playouts[0]!.spokenText).toBe('Ok. Done.');
  });

  it('stamps microphone frames with the open turn’s trace context once the user speaks', async () => {
    const { sid, session } = await gateway('gw-trace');
    const parents: (string | undefined)[] = [];
    client.subscribeRaw(
      subjects.audioIn(sid),
      (m) => void parents.push(m.headers?.has('traceparent') ? m.headers.get('traceparent') : undefined),
    );
    await client.nc.flush();
    session.tick(mic());
    client.publish(channels.vad, sid, { kind: 'start', atMs: 0 });
    await waitFor(() => {
      session.tick(mic());
      return parents.some((p) => p !== undefined);
    });
    expect(parents[0]).toBeUndefined();
    // The stages' spans hang under the turn's root: the same trace id on every frame of the turn.
    const ids = new Set(parents.filter((p): p is string => p !== undefined).map((p) => p.split('-')[1]));
    expect(ids.size).toBe(1);
    const [traceId] = [...ids];

    // The root span ends when the agent's answer has played, carrying the voice-to-voice latency.
    client.publish(channels.turn, sid, { turnId: 'r1', kind: 'end', text: 'hi', eouProb: 1, speechEndMs: 20 });
    await new Promise((r) => setTimeout(r, 30));
    oneAnswerFrame(sid, 'r1');
    await firstFrame(session);
    const spans = await otlp.waitForSpans((all) => all.some((s) => s.name === SPAN.turn && s.traceId === traceId));
    const root = spans.find((s) => s.name === SPAN.turn && s.traceId === traceId)!;
    expect(root.parentSpanId).toBeUndefined();
    expect(root.attributes[ATTR.turnId]).toBe('r1');
    expect(root.attributes[ATTR.sessionId]).toBe('gw-trace');
    expect(typeof root.attributes[ATTR.e2eMs]).toBe('number');
    expect(spans.some((s) => s.name === SPAN.gatewayPlayout && s.parentSpanId === root.spanId)).toBe(true);
  });

  it('opens the root of a turn end it saw no speech start for in the trace the turn came in', async () => {
    // A final that replaced a turn ended on its partial, or a gateway restarted mid-turn: the turn detector's trace.
    const { sid, session } = await gateway('gw-late-end');
    const detect = startStageSpan(SPAN.turnDetect, { sessionId: 'gw-late-end', stage: 'turn-detector' });
    const traceId = detect.spanContext().traceId;
    client.publish(
      channels.turn,
      sid,
      { turnId: 'late1', kind: 'end', text: 'hi', eouProb: 1, speechEndMs: 20 },
      { context: contextOf(detect) },
    );
    detect.end();
    await client.nc.flush();
    await new Promise((r) => setTimeout(r, 30));
    oneAnswerFrame(sid, 'late1');
    await firstFrame(session);
    const spans = await otlp.waitForSpans((all) => all.some((s) => s.name === SPAN.turn && s.traceId === traceId));
    const root = spans.find((s) => s.name === SPAN.turn && s.traceId === traceId)!;
    expect(root.attributes[ATTR.turnId]).toBe('late1');
    expect(root.parentSpanId).toBe(detect.spanContext().spanId);
  });

  it('replays the microphone audio it sent from a point on, newest kept within the bound (stt taking over)', async () => {
    const { sid, session } = await gateway('gw-replay');
    const frames = 1000; // 20 s: more than the 10 s kept
    for (let i = 0; i < frames; i++) session.tick(frame(i));
    const pcmOf = (b64: string) => {
      const buf = Buffer.from(b64, 'base64');
      return new Int16Array(buf.buffer, buf.byteOffset, buf.byteLength / 2);
    };
    const recent = await client.requestSession(sessionRequests.audioReplay, sid, { fromMs: 19_000 });
    expect(recent).toMatchObject({ fromMs: 19_000, sampleRate: 16000, seq: 950, nextSeq: frames });
    const pcm = pcmOf(recent.pcm);
    expect(pcm.length).toBe(50 * 320);
    expect([pcm[0], pcm[320], pcm.at(-1)]).toEqual([950, 951, 999]); // frame by frame, in order
    const all = await client.requestSession(sessionRequests.audioReplay, sid, { fromMs: 0 });
    const kept = AUDIO_REPLAY_MAX_BYTES / 640;
    expect(all).toMatchObject({ seq: frames - kept, fromMs: (frames - kept) * 20, nextSeq: frames });
    expect(pcmOf(all.pcm)[0]).toBe(frames - kept);
    const none = await client.requestSession(sessionRequests.audioReplay, sid, { fromMs: 30_000 });
    expect(none).toMatchObject({ seq: frames, nextSeq: frames, pcm: '' });
  });
});
