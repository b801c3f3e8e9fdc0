import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSession } from '@va/actor';
import { frames } from '@va/audio';
import { Bus } from '@va/bus';
import { startPipeline, type Pipeline } from '@va/e2e';
import { channels, encodeAudioFrame, ErrorEvent, requests, sessionId, STAGES, subjects } from '@va/protocol';
import { speak, waitFor } from '@va/testkit';

const stages = STAGES.filter((s) => s !== 'media-gateway');
const bad = sessionId('bad-input');
const good = sessionId('good-one');
const enc = new TextEncoder();

let pipeline: Pipeline;
let client: Bus;

beforeAll(async () => {
  pipeline = await startPipeline({ llmTtftMs: 20, llmTokensPerSecond: 200 });
  client = await Bus.connect({ stage: 'test-client', servers: pipeline.nats.url });
  for (const sid of [bad, good]) {
    const acks = await openSession(client, sid, {}, { stages, timeoutMs: 30_000 });
    expect(acks.map((a) => a.stage).sort()).toEqual([...stages].sort());
  }
}, 120_000);

afterAll(async () => {
  await client?.drain();
  await pipeline?.stop();
});

describe('bad input to every stage', () => {
  it('is answered with error events, and every stage keeps serving its other sessions', async () => {
    const errors: ErrorEvent[] = [];
    client.subscribeRaw(subjects.error(bad), (m) => void errors.push(ErrorEvent.parse(m.json())));
    await client.nc.flush();

    // Garbage on every JSON subject of the session, and audio at the wrong rate / with broken headers.
    for (const ch of [
      channels.vad,
      channels.transcript,
      channels.turn,
      channels.replyFast,
      channels.replyDeep,
      channels.playout,
      channels.speech,
      channels.control,
    ]) {
      client.nc.publish(ch.subject(bad), enc.encode('{"turnId": 7, "garbage": true}'));
      client.nc.publish(ch.subject(bad), enc.encode('not json at all'));
    }
    const speech = await speak('testing one two three');
    const at48k = encodeAudioFrame({ samples: new Int16Array(960), sampleRate: 48000, seq: 0, tsMs: 0 });
    client.nc.publish(subjects.audioIn(bad), at48k);
    client.nc.publish(subjects.audioIn(bad), new Uint8Array(7));
    await client.nc
      .request(subjects.ctxGet, enc.encode('{"sessionId": "x.y"}'), { timeout: 2000 })
      .catch(() => undefined);

    // Each stage reports what it was sent, naming itself.
    const expected = {
      'every stage': () => stages.every((s) => errors.some((e) => e.stage === s)),
      'stt refuses 48 kHz audio': () =>
        errors.some((e) => e.stage === 'stt' && e.code === 'bad-audio' && /48000 Hz/.test(e.message)),
      'turn-detector refuses bad audio': () =>
        errors.some((e) => e.stage === 'turn-detector' && e.code === 'bad-audio'),
      'tts refuses bad replies': () => errors.some((e) => e.stage === 'tts' && e.code === 'bad-message'),
    };
    await waitFor(() => Object.values(expected).every((check) => check()), {
      timeoutMs: 15_000,
      message: `expected errors: ${Object.keys(expected).join(', ')} (got ${JSON.stringify(errors.map((e) => `${e.stage}:${e.code}`))})`,
    });

    // The other session is still served end to end by the same processes.
    const transcripts: string[] = [];
    const vads: string[] = [];
    const replies = { fast: '', deep: '' };
    const audioOut: number[] = [];
    client.subscribe(channels.transcript, good, (t) => void (t.final && transcripts.push(t.text)));
    client.subscribe(channels.vad, good, (v) => void vads.push(v.kind));
    client.subscribe(channels.replyFast, good, (r) => void (replies.fast += r.delta));
    client.subscribe(channels.replyDeep, good, (r) => void (replies.deep += r.delta));
    client.subscribeAudio('out', good, (f) => void audioOut.push(f.seq));
    await client.nc.flush();

    let seq = 0;
    for (const f of frames({ samples: speech.samples, sampleRate: speech.sampleRate }, 20)) {
      client.publishAudio('in', good, { samples: f.samples, sampleRate: 16000, seq, tsMs: seq * 20 });
      seq++;
    }
    for (let i = 0; i < 60; i++) {
      client.publishAudio('in', good, {
        samples: new Int16Array(320).map(() => Math.round(Math.random() * 8 - 4)),
        sampleRate: 16000,
        seq,
        tsMs: seq * 20,
      });
      seq++;
    }
    client.publish(channels.turn, good, {
      turnId: 'g1',
      kind: 'end',
      text: 'what should I pack for a hike',
      eouProb: 0.9,
      speechEndMs: 1000,
    });

    await waitFor(() => vads.includes('start') && vads.includes('end'), {
      timeoutMs: 15_000,
      message: 'vad events for the good session',
    });
    await waitFor(() => transcripts.length > 0, {
      timeoutMs: 15_000,
      message: 'a final transcript for the good session',
    });
    await waitFor(() => replies.fast !== '' && replies.deep !== '' && audioOut.length > 10, {
      timeoutMs: 20_000,
      message: 'opener, answer and agent audio for the good session',
    });
    const history = await client.request(requests.ctxGet, { sessionId: good, maxTokens: 500 });
    expect(history.messages.some((m) => m.role === 'user' && /pack/.test(m.content))).toBe(true);

    // No stage died on the way.
    for (const s of pipeline.stages) expect(() => process.kill(s.pid, 0), s.stage).not.toThrow();
  });
});
