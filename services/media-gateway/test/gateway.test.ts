import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ActorContext } from '@va/actor';
import { Bus } from '@va/bus';
import { BUCKETS, channels, ErrorEvent, sessionId, subjects, type Playout, type SessionId } from '@va/protocol';
import { ATTR, shutdownTelemetry, SPAN, startTelemetry } from '@va/telemetry';
import { startNatsServer, startOtlpReceiver, waitFor, type NatsServerHandle, type OtlpReceiver } from '@va/testkit';
import { GatewaySession } from '../src/actor.js';

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
  const ctx = new ActorContext(
    sid,
    { sampleRate: 16000, language: 'en-US' },
    'media-gateway',
    bus,
    await bus.kv(BUCKETS.state),
    false,
    bus.log,
  );
  ctx.followControl();
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
    for (const offset of part.offsets) {
      client.publishAudio('out', sid, {
        samples: frame(source === 'fast' ? 1000 : 2000),
        sampleRate: 16000,
        seq,
        tsMs: seq * 20,
        turnId,
        source,
        textOffset: offset,
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
    expect(session.segments.map((s) => s.source)).toEqual(['fast', 'deep']);
    expect(session.idle).toBe(true);
  });

  it('flushes within one frame on barge-in and keeps only what was heard', async () => {
    const { sid, session, playouts } = await gateway('gw-barge');
    await agentTurn(
      sid,
      'b1',
      { text: 'Sure.', offsets: [5] },
      { text: 'The answer is forty two.', offsets: [4, 8, 14, 24] },
    );
    await firstFrame(session);
    expect(session.tick(mic())?.[0]).toBe(2000); // "The " heard
    client.publish(channels.turn, sid, { turnId: 'b1', kind: 'barge-in', text: '', eouProb: 0, speechEndMs: 100 });
    await waitFor(() => playouts.length === 1);
    expect(session.tick(mic())).toBeUndefined();
    expect(playouts[0]).toMatchObject({
      turnId: 'b1',
      spokenText: 'Sure. The',
      interrupted: true,
      done: true,
      playedMs: 40,
    });
  });

  it('answers bad input with error events and keeps working', async () => {
    const { sid, session, playouts } = await gateway('gw-bad');
    const errors: ErrorEvent[] = [];
    client.subscribeRaw(subjects.error(sid), (m) => void errors.push(ErrorEvent.parse(m.json())));
    await client.nc.flush();
    for (const ch of [channels.vad, channels.turn, channels.speech, channels.replyDeep, channels.control]) {
      client.nc.publish(ch.subject(sid), new TextEncoder().encode('{"kind": 42}'));
    }
    client.nc.publish(subjects.audioOut(sid), new Uint8Array(3));
    await waitFor(() => errors.length >= 6);
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
    client.publishAudio('out', sid, {
      samples: frame(5),
      sampleRate: 16000,
      seq: 0,
      tsMs: 0,
      turnId: 'r1',
      source: 'deep',
      textOffset: 2,
    });
    client.publish(channels.speech, sid, { turnId: 'r1', source: 'deep', text: 'Ok', frames: 1, skipped: false });
    await firstFrame(session);
    const spans = await otlp.waitForSpans((all) => all.some((s) => s.name === SPAN.turn && s.traceId === traceId));
    const root = spans.find((s) => s.name === SPAN.turn && s.traceId === traceId)!;
    expect(root.parentSpanId).toBeUndefined();
    expect(root.attributes[ATTR.turnId]).toBe('r1');
    expect(root.attributes[ATTR.sessionId]).toBe('gw-trace');
    expect(typeof root.attributes[ATTR.e2eMs]).toBe('number');
    expect(spans.some((s) => s.name === SPAN.gatewayPlayout && s.parentSpanId === root.spanId)).toBe(true);
  });
});
