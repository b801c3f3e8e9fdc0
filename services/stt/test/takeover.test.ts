import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '@va/bus';
import { ActorInstances } from '@va/testkit';
import { channels, sessionId, sessionRequests, type SessionId, type Transcript } from '@va/protocol';
import { FakeSTT, type AudioChunk, type TranscriptEvent } from '@va/providers';
import { waitFor } from '@va/testkit';
import { STAGE, sttActor } from '../src/actor.js';

// Two stt instances on a real nats-server; the one hearing an utterance is crashed mid-utterance (connection
// gone, no handover). The one that takes the session over asks the gateway for the audio its predecessor had
// not finished (here the test's microphone serves it, as the gateway does) and transcribes the whole utterance.

let instances: ActorInstances;
let client: Bus;

beforeAll(async () => {
  instances = await ActorInstances.start();
  client = instances.client;
});
afterEach(() => instances.stopInstances());
afterAll(() => instances?.stop());

/**
 * A recogniser that hears each loud run as a word named by its start (`w1000`) and finalises the words when
 * 200 ms of quiet follow them — deterministic, and it only knows what it was fed.
 */
function wordsRecogniser() {
  return new FakeSTT(() => {
    let words: { name: string; startMs: number; endMs: number }[] = [];
    let loudFrom: number | undefined;
    let quietMs = 0;
    return (chunk: AudioChunk | undefined): TranscriptEvent | void => {
      if (!chunk) return;
      const atMs = chunk.tsMs ?? 0;
      const loud = chunk.samples.some((v) => Math.abs(v) > 1000);
      if (loud) {
        loudFrom ??= atMs;
        quietMs = 0;
        return;
      }
      if (loudFrom !== undefined) {
        words.push({ name: `w${loudFrom}`, startMs: loudFrom, endMs: atMs });
        loudFrom = undefined;
      }
      quietMs += 20;
      if (quietMs < 200 || words.length === 0) return;
      const text = words.map((w) => w.name).join(' ');
      const event = {
        text,
        final: true,
        stable: true,
        confidence: 1,
        startMs: words[0]!.startMs,
        endMs: words.at(-1)!.endMs,
      };
      words = [];
      return event;
    };
  });
}

const startInstance = () =>
  instances.add(
    STAGE,
    sttActor(async () => wordsRecogniser()),
  );

/** The microphone, as the gateway sends it: every frame kept, and served back on `audio.replay`. */
function microphone(sid: SessionId) {
  const sent: Int16Array[] = [];
  client.serveSession(sessionRequests.audioReplay, sid, ({ fromMs }) => {
    const seq = Math.min(sent.length, Math.floor(fromMs / 20));
    const pcm = Buffer.concat(sent.slice(seq).map((s) => Buffer.from(s.buffer, s.byteOffset, s.byteLength)));
    return { fromMs: seq * 20, sampleRate: 16000 as const, seq, nextSeq: sent.length, pcm: pcm.toString('base64') };
  });
  return (ms: number, loud: boolean) => {
    for (let t = 0; t < ms; t += 20) {
      const samples = Int16Array.from({ length: 320 }, (_, i) =>
        loud ? Math.round(8000 * Math.sin(i / 3)) : (i % 3) - 1,
      );
      client.publishAudio('in', sid, { samples, sampleRate: 16000, seq: sent.length, tsMs: sent.length * 20 });
      sent.push(samples);
    }
  };
}

describe('stt taken over mid-utterance', () => {
  it('re-hears the utterance from the last final on: every word once, none lost to the crash', async () => {
    const first = await startInstance();
    const sid = sessionId('stt-takeover-1');
    const finals: Transcript[] = [];
    client.subscribe(channels.transcript, sid, (t) => void (t.final && finals.push(t)));
    const send = microphone(sid);
    await client.nc.flush();
    await instances.open(sid, {}, [STAGE]);
    expect(first.host.sessionIds).toContain(sid);
    const second = await startInstance();

    send(200, false);
    send(200, true); // utterance 1: a word at 200 ms, finalised by the first instance
    send(400, false);
    await waitFor(() => finals.length === 1);
    expect(finals[0]).toMatchObject({ text: 'w200', startMs: 200 });

    send(200, true); // utterance 2 begins: a word at 800 ms…
    send(100, false);
    await client.nc.flush();
    await new Promise((r) => setTimeout(r, 100)); // …heard by the first instance, not yet final
    const claimed = second.claims(sid);
    await first.crash();
    send(200, true); // …another at 1100 ms while no instance holds the session
    send(300, false);
    await claimed;
    send(400, false);
    await waitFor(() => finals.length === 2, { message: 'the new owner finalises utterance 2' });
    expect(finals[1]).toMatchObject({ text: 'w800 w1100', startMs: 800 });
    await new Promise((r) => setTimeout(r, 200));
    expect(finals.map((f) => f.text)).toEqual(['w200', 'w800 w1100']); // utterance 1 not transcribed again

    // The new owner also answers a turn-detector taking over: its finals after a point.
    const replay = await client.requestSession(sessionRequests.transcriptReplay, sid, { afterMs: 500 });
    expect(replay.finals.map((f) => f.text)).toEqual(['w800 w1100']);
  });
});
