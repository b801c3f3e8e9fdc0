import {
  AudioFrame,
  AudioSource,
  AudioStream,
  DisconnectReason,
  LocalAudioTrack,
  Room,
  RoomEvent,
} from '@livekit/rtc-node';
import { TokenVerifier } from 'livekit-server-sdk';
import { describe, expect, it } from 'vitest';
import { Framer } from '@va/audio';
import type { SessionId } from '@va/protocol';
import {
  AgentVoice,
  downmix,
  MicConverter,
  micFrames,
  PIPELINE_FRAME_SAMPLES,
  type AudioSourceLike,
  type MicFrame,
} from '../src/livekit/audio.js';
import {
  LiveKitRoom,
  LiveKitTransport,
  sessionIdFor,
  type Clock,
  type RemoteAudio,
  type RoomEvents,
  type SessionHandle,
} from '../src/livekit/room.js';
import { agentToken, clientToken, parseLiveKitEnv, type LiveKitConfig } from '../src/livekit/token.js';
import { FakeRoom, FakeSource } from './fake-room.js';

const cfg: LiveKitConfig = {
  url: 'ws://localhost:7880',
  apiKey: 'devkey',
  apiSecret: 'a-test-secret-of-some-length-0123',
};

function tone(hz: number, rate: number, seconds: number, amplitude = 8000, channels = 1): Int16Array {
  const n = Math.round(rate * seconds);
  const out = new Int16Array(n * channels);
  for (let i = 0; i < n; i++) {
    const v = Math.round(amplitude * Math.sin((2 * Math.PI * hz * i) / rate));
    for (let c = 0; c < channels; c++) out[i * channels + c] = v;
  }
  return out;
}

/** 10 ms frames, as LiveKit delivers them. */
function frames48k(samples: Int16Array, rate = 48000, channels = 1): AudioFrame[] {
  const per = (rate / 100) * channels;
  const out: AudioFrame[] = [];
  for (let at = 0; at < samples.length; at += per) {
    const data = samples.slice(at, at + per);
    out.push(new AudioFrame(data, rate, channels, data.length / channels));
  }
  return out;
}

function zeroCrossings(samples: Int16Array): number {
  let n = 0;
  for (let i = 1; i < samples.length; i++) if (samples[i - 1]! < 0 !== samples[i]! < 0) n++;
  return n;
}

function joined(frames: MicFrame[]): Int16Array {
  const out = new Int16Array(frames.reduce((n, f) => n + f.samples.length, 0));
  let at = 0;
  for (const f of frames) {
    out.set(f.samples, at);
    at += f.samples.length;
  }
  return out;
}

/** Checks 440 Hz by zero crossings over the steady part (the resampler's first few ms are its delay). */
function expectTone(samples: Int16Array, hz: number, rate: number): void {
  const steady = samples.subarray(Math.round(rate * 0.05), samples.length - Math.round(rate * 0.05));
  const measured = zeroCrossings(steady) / 2 / (steady.length / rate);
  expect(Math.abs(measured - hz)).toBeLessThan(hz * 0.02);
}

async function* fromArray<T>(items: T[], delayMs = 0): AsyncGenerator<T> {
  for (const item of items) {
    if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
    yield item;
  }
}

async function until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('livekit tokens', () => {
  it('parses the environment and names the bad variable, never the secret', () => {
    expect(
      parseLiveKitEnv({ LIVEKIT_URL: 'wss://lk.example.com', LIVEKIT_API_KEY: 'k', LIVEKIT_API_SECRET: 's' }),
    ).toEqual({ url: 'wss://lk.example.com', apiKey: 'k', apiSecret: 's' });
    const secret = 'super secret value';
    let message = '';
    try {
      parseLiveKitEnv({ LIVEKIT_URL: 'ftp://x', LIVEKIT_API_SECRET: secret });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain('LIVEKIT_URL');
    expect(message).toContain('LIVEKIT_API_KEY');
    expect(message).toContain('LIVEKIT_API_SECRET');
    expect(message).not.toContain('super');
    expect(message).not.toContain('secret value');
  });

  it('the agent token joins one room, publishes microphone audio only, no data, not admin', async () => {
    const jwt = await agentToken(cfg, 'room-1', 'room-1');
    const claims = await new TokenVerifier(cfg.apiKey, cfg.apiSecret).verify(jwt);
    expect(claims.sub).toBe('agent-room-1');
    expect(claims.kind).toBe('agent');
    expect(claims.video).toMatchObject({
      room: 'room-1',
      roomJoin: true,
      canPublish: true,
      canSubscribe: true,
      canPublishData: false,
      hidden: false,
    });
    // Sources are the only thing it may publish: the microphone, so no camera or screen share.
    expect(claims.video?.canPublishSources).toEqual(['microphone']);
    for (const admin of ['roomAdmin', 'roomCreate', 'roomList', 'roomRecord', 'ingressAdmin', 'agent'] as const) {
      expect(claims.video?.[admin]).toBeFalsy();
    }
    expect(claims.exp! - claims.nbf!).toBe(600);
  });

  it('the client token publishes its microphone and subscribes, with no admin and an expiry', async () => {
    const jwt = await clientToken(cfg, 'room-1', 'alice', { ttlSeconds: 120 });
    const claims = await new TokenVerifier(cfg.apiKey, cfg.apiSecret).verify(jwt);
    expect(claims.sub).toBe('alice');
    expect(claims.video).toMatchObject({ room: 'room-1', roomJoin: true, canSubscribe: true, canPublishData: false });
    expect(claims.video?.canPublishSources).toEqual(['microphone']);
    expect(claims.video?.roomAdmin).toBeFalsy();
    expect(claims.video?.roomCreate).toBeFalsy();
    expect(claims.video?.hidden).toBeFalsy();
    expect(claims.exp! - claims.nbf!).toBe(120);
    await expect(clientToken(cfg, 'room-1', 'agent-x')).rejects.toThrow(/agent-/);
  });

  it('a token signed with another secret fails verification', async () => {
    const jwt = await clientToken(cfg, 'room-1', 'alice');
    await expect(new TokenVerifier(cfg.apiKey, 'another-secret-entirely-0123456789').verify(jwt)).rejects.toThrow();
  });
});

describe('livekit audio path', () => {
  it('reframes any chunking into 320-sample frames (the one Framer of @va/audio)', () => {
    const r = new Framer(PIPELINE_FRAME_SAMPLES);
    const src = Int16Array.from({ length: 1000 }, (_, i) => i);
    const out = [...r.push(src.subarray(0, 100)), ...r.push(src.subarray(100, 777)), ...r.push(src.subarray(777))];
    expect(out.map((f) => f.length)).toEqual([320, 320, 320]);
    expect(out[1]![0]).toBe(320);
    expect(r.buffered).toBe(40);
  });

  it('downmixes interleaved stereo', () => {
    const f = new AudioFrame(Int16Array.from([100, 300, -50, -150]), 48000, 2, 2);
    expect([...downmix(f)]).toEqual([200, -100]);
  });

  it('1 s of a 48 kHz 440 Hz tone becomes 50 frames of 320 samples at 16 kHz, the tone kept', () => {
    const c = new MicConverter();
    const out = frames48k(tone(440, 48000, 1)).flatMap((f) => c.push(f));
    out.push(...c.flush());
    c.close();
    expect(out).toHaveLength(50);
    expect(out.every((f) => f.samples.length === 320)).toBe(true);
    expect(out.map((f) => f.tsMs)).toEqual(Array.from({ length: 50 }, (_, i) => i * 20));
    expect(out.map((f) => f.seq)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expectTone(joined(out), 440, 16000);
  });

  it('stereo 48 kHz and 16 kHz input come out the same way', async () => {
    const stereo: MicFrame[] = [];
    for await (const f of micFrames(fromArray(frames48k(tone(440, 48000, 0.5, 8000, 2), 48000, 2)))) stereo.push(f);
    expect(stereo).toHaveLength(25);
    expectTone(joined(stereo), 440, 16000);
    const native: MicFrame[] = [];
    for await (const f of micFrames(fromArray(frames48k(tone(440, 16000, 0.5), 16000)))) native.push(f);
    expect(native).toHaveLength(25);
    expect(joined(native)).toEqual(tone(440, 16000, 0.5));
  });

  it('loops a tone through AudioSource → LocalAudioTrack → AudioStream, with no room', async () => {
    const source = new AudioSource(48000, 1);
    const track = LocalAudioTrack.createAudioTrack('loopback', source);
    const stream = new AudioStream(track, { sampleRate: 48000, numChannels: 1 });
    const reader = stream.getReader();
    async function* read(): AsyncGenerator<AudioFrame> {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        yield value;
      }
    }
    const feeding = (async () => {
      for (const f of frames48k(tone(440, 48000, 1))) await source.captureFrame(f);
    })();
    const got: MicFrame[] = [];
    for await (const f of micFrames(read())) {
      got.push(f);
      if (got.length === 40) break;
    }
    await feeding;
    await reader.cancel();
    await track.close();
    expect(got.map((f) => f.tsMs)).toEqual(Array.from({ length: 40 }, (_, i) => i * 20));
    expectTone(joined(got), 440, 16000);
  }, 10_000);

  it('the agent voice captures 16 kHz frames in order, silence included', async () => {
    const source = new FakeSource();
    const voice = new AgentVoice(source);
    voice.play(new Int16Array(320).fill(5));
    voice.play(undefined);
    await voice.drained();
    expect(source.frames.map((f) => [f.sampleRate, f.channels, f.samplesPerChannel, f.data[0]])).toEqual([
      [16000, 1, 320, 5],
      [16000, 1, 320, 0],
    ]);
    const wrongRate: AudioSourceLike = new FakeSource(48000);
    expect(() => new AgentVoice(wrongRate)).toThrow(/16000/);
  });
});

/** A clock as fast as the event loop allows. */
const fastClock: Clock = async (_ms, step, signal) => {
  let i = 0;
  while (!signal.aborted && step(i)) {
    i++;
    await new Promise((r) => setTimeout(r, 1));
  }
  return i;
};

class StubSessions {
  readonly opened: SessionId[] = [];
  readonly closed: SessionId[] = [];
  readonly mics = new Map<string, Int16Array[]>();
  factory = async (sid: SessionId, identity: string): Promise<SessionHandle> => {
    this.opened.push(sid);
    const mics: Int16Array[] = [];
    this.mics.set(identity, mics);
    let n = 0;
    return {
      tick: (mic) => {
        mics.push(mic);
        return n++ % 2 === 0 ? new Int16Array(320).fill(7) : undefined;
      },
      close: () => void this.closed.push(sid),
    };
  };
}

describe('livekit room transport', () => {
  it('one session per participant: opened on join, agent frames published, closed on leave', async () => {
    const room = new FakeRoom('room1');
    const stubs = new StubSessions();
    const sources: FakeSource[] = [];
    const t = new LiveKitTransport({
      room,
      openSession: stubs.factory,
      clock: fastClock,
      newSource: () => {
        const s = new FakeSource();
        sources.push(s);
        return s;
      },
    });
    await t.start('ws://x', 'token');
    room.events!.participantConnected('alice');
    room.events!.participantConnected('agent-other'); // another agent: not served
    await until(() => (sources[0]?.frames.length ?? 0) >= 6);
    expect(stubs.opened).toEqual([sessionIdFor('room1', 'alice')]);
    expect(t.identities).toEqual(['alice']);
    expect(room.published.map((p) => p.name)).toEqual(['agent-voice-alice']);
    const values = sources[0]!.frames.slice(0, 4).map((f) => [f.sampleRate, f.samplesPerChannel, f.data[0]]);
    expect(values).toEqual([
      [16000, 320, 7],
      [16000, 320, 0],
      [16000, 320, 7],
      [16000, 320, 0],
    ]);

    // The user's microphone: a 48 kHz tone reaches tick as 16 kHz 320-sample frames.
    let closedAudio = false;
    const audio: RemoteAudio = {
      frames: fromArray(frames48k(tone(440, 48000, 0.4, 12000)), 1),
      close: () => void (closedAudio = true),
    };
    room.events!.audioTrackSubscribed('alice', audio);
    await until(() => stubs.mics.get('alice')!.some((m) => Math.max(...m) > 6000));
    expect(stubs.mics.get('alice')!.every((m) => m.length === 320)).toBe(true);

    room.events!.participantDisconnected('alice');
    await until(() => stubs.closed.length === 1);
    await until(() => sources[0]!.closed);
    expect(stubs.closed).toEqual([sessionIdFor('room1', 'alice')]);
    expect(room.published[0]!.unpublished).toBe(true);
    expect(closedAudio).toBe(true);
    expect(t.identities).toEqual([]);

    await t.stop();
    expect(room.connected).toBe(false);
  });

  it('a track before the join event opens the session; stop closes every session', async () => {
    const room = new FakeRoom('room2');
    const stubs = new StubSessions();
    const t = new LiveKitTransport({
      room,
      openSession: stubs.factory,
      clock: fastClock,
      newSource: () => new FakeSource(),
    });
    await t.start('ws://x', 'token');
    room.events!.audioTrackSubscribed('bob', { frames: fromArray([]), close: () => {} });
    room.events!.participantConnected('bob');
    room.events!.participantConnected('carol');
    await until(() => stubs.opened.length === 2 && room.published.length === 2);
    expect([...stubs.opened].sort()).toEqual([sessionIdFor('room2', 'bob'), sessionIdFor('room2', 'carol')].sort());
    await t.stop();
    expect([...stubs.closed].sort()).toEqual([sessionIdFor('room2', 'bob'), sessionIdFor('room2', 'carol')].sort());
    expect(room.published.every((p) => p.unpublished)).toBe(true);
    room.events!.participantConnected('dave'); // after stop: ignored
    expect(t.identities).toEqual([]);
  });

  it('a participant who leaves while the session opens never gets a track', async () => {
    const room = new FakeRoom('room3');
    let release: () => void = () => {};
    const closed: string[] = [];
    const t = new LiveKitTransport({
      room,
      clock: fastClock,
      newSource: () => new FakeSource(),
      openSession: async (sid) => {
        await new Promise<void>((r) => (release = r));
        return { tick: () => undefined, close: () => void closed.push(sid) };
      },
    });
    await t.start('ws://x', 'token');
    room.events!.participantConnected('erin');
    const leaving = t.leave('erin');
    release();
    await leaving;
    expect(closed).toEqual([sessionIdFor('room3', 'erin')]);
    expect(room.published).toEqual([]);
  });

  it('a lost room closes every session and tells the owner once; stop() then does not leave again', async () => {
    let disconnects = 0;
    const room = new (class extends FakeRoom {
      override async disconnect(): Promise<void> {
        disconnects++;
        await super.disconnect();
      }
    })('room4');
    const stubs = new StubSessions();
    const lost: string[] = [];
    const t = new LiveKitTransport({
      room,
      openSession: stubs.factory,
      clock: fastClock,
      newSource: () => new FakeSource(),
      onLost: (reason) => lost.push(reason),
    });
    await t.start('ws://x', 'token');
    room.events!.participantConnected('alice');
    room.events!.participantConnected('bob');
    await until(() => room.published.length === 2);

    room.lose('PARTICIPANT_REMOVED');
    expect(lost).toEqual(['PARTICIPANT_REMOVED']);
    room.events!.disconnected('SIGNAL_CLOSE'); // a second report changes nothing
    await until(() => stubs.closed.length === 2);
    expect([...stubs.closed].sort()).toEqual([sessionIdFor('room4', 'alice'), sessionIdFor('room4', 'bob')].sort());
    expect(room.published.every((p) => p.unpublished)).toBe(true);
    room.events!.participantConnected('carol'); // after the loss: ignored
    await t.stop();
    expect(t.identities).toEqual([]);
    expect(lost).toEqual(['PARTICIPANT_REMOVED']);
    expect(disconnects).toBe(0);
  });

  it('our own stop is never reported as a loss', async () => {
    const room = new FakeRoom('room5');
    const stubs = new StubSessions();
    const lost: string[] = [];
    const t = new LiveKitTransport({
      room,
      openSession: stubs.factory,
      clock: fastClock,
      newSource: () => new FakeSource(),
      onLost: (reason) => lost.push(reason),
    });
    await t.start('ws://x', 'token');
    room.events!.participantConnected('alice');
    await until(() => room.published.length === 1);
    await t.stop();
    room.events!.disconnected('CLIENT_INITIATED'); // as a room might report the disconnect we asked for
    expect(lost).toEqual([]);
    expect(stubs.closed).toEqual([sessionIdFor('room5', 'alice')]);
    expect(room.connected).toBe(false);
  });

  it("LiveKitRoom reports rtc-node's Disconnected by reason name, never for its own disconnect()", async () => {
    /** A rtc-node room with no server; its disconnect reports `ownReason`, as the SDK's does (or a racing one). */
    class ServerlessRoom extends Room {
      constructor(private readonly ownReason = DisconnectReason.CLIENT_INITIATED) {
        super();
      }
      override async connect(): Promise<void> {}
      override async disconnect(): Promise<void> {
        this.emit(RoomEvent.Disconnected, this.ownReason);
        this.removeAllListeners();
      }
    }
    const reported: string[] = [];
    const events: RoomEvents = {
      participantConnected: () => {},
      participantDisconnected: () => {},
      audioTrackSubscribed: () => {},
      disconnected: (reason) => reported.push(reason),
    };

    const kicked = new LiveKitRoom('r1', new ServerlessRoom());
    await kicked.connect('ws://x', 'token', events);
    kicked.room.emit(RoomEvent.Disconnected, DisconnectReason.ROOM_DELETED);
    expect(reported).toEqual(['ROOM_DELETED']);

    for (const ownReason of [DisconnectReason.CLIENT_INITIATED, DisconnectReason.SIGNAL_CLOSE]) {
      const left = new LiveKitRoom('r2', new ServerlessRoom(ownReason));
      await left.connect('ws://x', 'token', events);
      await left.disconnect();
    }
    const clientSide = new LiveKitRoom('r3', new ServerlessRoom());
    await clientSide.connect('ws://x', 'token', events);
    clientSide.room.emit(RoomEvent.Disconnected, DisconnectReason.CLIENT_INITIATED);
    expect(reported).toEqual(['ROOM_DELETED']);
  });

  it('session ids come from room and identity, are valid subject tokens, and never collide', () => {
    const id = sessionIdFor('room1', 'alice');
    expect(id).toMatch(/^room1-alice-[A-Za-z0-9_-]{22}$/);
    expect(sessionIdFor('room1', 'alice')).toBe(id); // the same participant comes back to its session
    // Pairs the old joined-and-cleaned ids mapped to one session (an attacker could mint the second identity).
    const colliding: [[string, string], [string, string]][] = [
      [
        ['a', 'b-c'],
        ['a-b', 'c'],
      ],
      [
        ['my.room', 'alice@example.com'],
        ['my_room', 'alice_example_com'],
      ],
      [
        ['r', '\u00e9ve'],
        ['r', '_ve'],
      ],
      [
        ['r', 'x'.repeat(200)],
        ['r', 'x'.repeat(201)],
      ],
      [
        ['r', 'bob\u200B'],
        ['r', 'bob'],
      ],
    ];
    for (const [[r1, i1], [r2, i2]] of colliding) {
      const a = sessionIdFor(r1, i1);
      const b = sessionIdFor(r2, i2);
      expect(a, `${r1}/${i1} vs ${r2}/${i2}`).not.toBe(b);
      expect(a).toMatch(/^[A-Za-z0-9_-]{1,64}$/);
    }
    expect(sessionIdFor('r'.repeat(128), 'x'.repeat(200)).length).toBeLessThanOrEqual(64);
  });
});
