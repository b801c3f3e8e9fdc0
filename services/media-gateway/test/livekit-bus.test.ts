import { AudioFrame, AudioStream, type AudioSource } from '@livekit/rtc-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '@va/bus';
import { channels, type AudioFrame as BusFrame } from '@va/protocol';
import { startNatsServer, waitFor, type NatsServerHandle } from '@va/testkit';
import { agentTrack, newAgentSource } from '../src/livekit/audio.js';
import { LiveKitTransport, sessionIdFor } from '../src/livekit/room.js';
import { Admission } from '../src/admission.js';
import { busSessionFactory } from '../src/livekit/session.js';
import { FakeRoom } from './fake-room.js';

/**
 * The LiveKit transport's audio path with the real bus session behind it (no LiveKit server can run here): a
 * participant's 48 kHz track → `audio.in` frames on NATS; `audio.out` frames on NATS → the agent's real
 * `AudioSource`, read back through its `LocalAudioTrack`.
 */
let nats: NatsServerHandle;
let bus: Bus;
let client: Bus;

beforeAll(async () => {
  nats = await startNatsServer();
  bus = await Bus.connect({ stage: 'media-gateway', servers: nats.url });
  client = await Bus.connect({ stage: 'test-client', servers: nats.url });
});

afterAll(async () => {
  await bus?.drain();
  await client?.drain();
  await nats?.stop();
});

/** `seconds` of a 48 kHz tone in 10 ms frames (as LiveKit delivers a participant's microphone). */
function tone48k(hz: number, seconds: number, amplitude: number): AudioFrame[] {
  const frames: AudioFrame[] = [];
  for (let f = 0; f < seconds * 100; f++) {
    const data = new Int16Array(480);
    for (let i = 0; i < 480; i++)
      data[i] = Math.round(amplitude * Math.sin((2 * Math.PI * hz * (f * 480 + i)) / 48000));
    frames.push(new AudioFrame(data, 48000, 1, 480));
  }
  return frames;
}

async function* paced(frames: AudioFrame[], everyMs: number): AsyncGenerator<AudioFrame> {
  for (const f of frames) {
    await new Promise((r) => setTimeout(r, everyMs));
    yield f;
  }
}

describe('livekit transport on the bus', () => {
  it('a participant’s 48 kHz microphone becomes 16 kHz 20 ms frames on audio.in; audio.out reaches the agent’s AudioSource', async () => {
    const room = new FakeRoom('lkbus');
    const sources: AudioSource[] = [];
    const transport = new LiveKitTransport({
      room,
      // No stage required: this test is about the transport (admission has its own test).
      openSession: busSessionFactory(bus, {
        admission: new Admission(bus, { stages: [], openTimeoutMs: 100, log: bus.log }),
      }),
      newSource: () => {
        const s = newAgentSource();
        sources.push(s);
        return s;
      },
    });
    const sid = sessionIdFor('lkbus', 'alice');
    const heard: BusFrame[] = [];
    client.subscribeAudio('in', sid, (f) => void heard.push(f));
    await client.nc.flush();
    await transport.start('ws://lk.test', 'token');

    room.events!.participantConnected('alice');
    await waitFor(() => room.published.length === 1, { message: 'agent track published' });
    // Read the agent's track back the way a subscriber's stream would, at the pipeline's rate.
    const track = agentTrack('readback', sources[0]!);
    const reader = new AudioStream(track, { sampleRate: 16000, numChannels: 1 }).getReader();
    const played: Int16Array[] = [];
    const reading = (async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        played.push(value.data.slice());
      }
    })();

    // 0.6 s of a loud tone, delivered in real time.
    room.events!.audioTrackSubscribed('alice', { frames: paced(tone48k(440, 0.6, 12_000), 10), close: () => {} });
    await waitFor(() => heard.filter((f) => Math.max(...f.samples) > 6000).length >= 25, {
      message: 'the tone on audio.in',
      timeoutMs: 10_000,
    });
    // Every frame the gateway sent: 16 kHz, 320 samples, numbered in order, stamped 20 ms apart.
    expect(heard.every((f) => f.sampleRate === 16000 && f.samples.length === 320)).toBe(true);
    expect(heard.map((f) => f.seq)).toEqual(heard.map((_, i) => heard[0]!.seq + i));
    expect(heard.map((f) => f.tsMs)).toEqual(heard.map((f) => f.seq * 20));
    // The tone itself: 440 Hz has ~17.6 zero crossings per 20 ms frame.
    const loud = heard.filter((f) => Math.max(...f.samples) > 6000).slice(2, -2);
    for (const f of loud) {
      let crossings = 0;
      for (let i = 1; i < 320; i++) if (f.samples[i - 1]! < 0 !== f.samples[i]! < 0) crossings++;
      expect(crossings).toBeGreaterThanOrEqual(16);
      expect(crossings).toBeLessThanOrEqual(19);
    }

    // The agent answers: a turn, then three frames of its voice on audio.out.
    client.publish(channels.vad, sid, { kind: 'start', atMs: 0 });
    client.publish(channels.turn, sid, { turnId: 'lk1', kind: 'end', text: 'hi', eouProb: 0.9, speechEndMs: 20 });
    await client.nc.flush();
    await new Promise((r) => setTimeout(r, 50));
    for (let seq = 0; seq < 3; seq++) {
      const samples = new Int16Array(320).fill(3000 + 1000 * seq);
      client.publishAudio('out', sid, {
        samples,
        sampleRate: 16000,
        seq,
        tsMs: seq * 20,
        turnId: 'lk1',
        source: 'deep',
      });
    }
    client.publish(channels.speech, sid, { turnId: 'lk1', source: 'deep', text: 'Hello.', frames: 3, skipped: false });
    await waitFor(() => [3000, 4000, 5000].every((v) => played.some((p) => p.includes(v))), {
      message: 'agent frames through the AudioSource',
      timeoutMs: 5000,
    });
    // In order, each 20 ms long, between silence (the source plays silence when the agent says nothing).
    const order = played.map((p) => p.find((v) => v >= 3000)).filter((v) => v !== undefined);
    expect([...new Set(order)]).toEqual([3000, 4000, 5000]);

    room.events!.participantDisconnected('alice');
    await waitFor(() => room.published[0]!.unpublished, { message: 'agent track unpublished' });
    await reader.cancel();
    await reading;
    await track.close();
    await transport.stop();
  }, 30_000);
});
