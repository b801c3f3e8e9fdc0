import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { stateKey } from '@va/actor';
import { Bus } from '@va/bus';
import { BUCKETS, channels, sessionRequests, type AudioFrame, type SpeechDone } from '@va/protocol';
import { FakeTTS } from '@va/providers';
import { ActorInstances, waitFor, type ActorInstance } from '@va/testkit';
import { STAGE, ttsActor } from '../src/actor.js';

// Two tts instances on a real nats-server; the one speaking an answer is crashed mid-answer (connection gone, no
// handover). The other takes the session over and speaks on from where the audio stopped: the user hears every
// word of the answer once. The test client plays both responders (their deltas and their replies so far).

let instances: ActorInstances;
let client: Bus;

beforeAll(async () => {
  instances = await ActorInstances.start();
  client = instances.client;
});
afterEach(() => instances.stopInstances());
afterAll(() => instances?.stop());

// Synthesis at about real time, so an answer is still being spoken when its speaker dies.
const startInstance = () => instances.add(STAGE, ttsActor(new FakeTTS({ msPerChar: 20, rtf: 0.5 }), { fillers: [] }));

/** A session spoken by `first` (opened while it is the only instance), a second instance, and what they send. */
async function twoSpeakers(id: string, first: ActorInstance) {
  const sid = await instances.open(id, {}, [STAGE]);
  expect(first.host.sessionIds).toContain(sid);
  const second = await startInstance();
  const frames: AudioFrame[] = [];
  const speeches: SpeechDone[] = [];
  client.subscribeAudio('out', sid, (f) => void frames.push(f));
  client.subscribe(channels.speech, sid, (s) => void speeches.push(s));
  return { first, second, sid, frames, speeches };
}

describe('tts taken over mid-answer', () => {
  it('the successor speaks on from where the audio stopped: every word heard once, in order', async () => {
    const { first, second, sid, frames, speeches } = await twoSpeakers('tts-takeover', await startInstance());
    // The responders' memory of what they streamed, as they answer reply.*.replay.
    const streamed = { fast: { text: '', nextSeq: 0, done: false }, deep: { text: '', nextSeq: 0, done: false } };
    client.serveSession(sessionRequests.replyFastReplay, sid, () => streamed.fast);
    client.serveSession(sessionRequests.replyDeepReplay, sid, () => streamed.deep);
    await client.nc.flush();
    const say = (source: 'fast' | 'deep', delta: string, done = false) => {
      const s = streamed[source];
      client.publish(source === 'fast' ? channels.replyFast : channels.replyDeep, sid, {
        turnId: 't1',
        seq: s.nextSeq,
        delta,
        done,
      });
      s.text += delta;
      s.nextSeq++;
      s.done = done;
    };

    client.publish(channels.turn, sid, { turnId: 't1', kind: 'end', text: 'tell me', eouProb: 1, speechEndMs: 0 });
    say('fast', 'Sure.', true);
    say('deep', 'The first sentence. The second');
    // The first sentence of the answer is out, and its speaker has kept how far it got.
    const state = await client.kv(BUCKETS.state);
    await waitFor(
      async () => {
        const e = await state.get(stateKey(STAGE, sid, 'speaking'));
        return e?.operation === 'PUT' && e.json<{ sent: { sentTo: { deep: number } } }>().sent.sentTo.deep > 0;
      },
      { timeoutMs: 10_000, message: 'the first instance kept how far the answer went' },
    );
    const claimed = second.claims(sid);
    await first.crash();
    const beforeCrash = frames.length;

    // The rest of the answer is streamed while no instance holds the session, and after.
    say('deep', ' one. And a third.');
    await claimed;
    say('deep', '', true);
    await waitFor(() => speeches.some((s) => s.source === 'deep'), {
      timeoutMs: 15_000,
      message: 'the answer spoken to its end by the successor',
    });

    const answer = 'The first sentence. The second one. And a third.';
    expect(frames.map((f) => f.text ?? '').join('')).toBe(`Sure.${answer}`);
    const resumed = frames.slice(beforeCrash);
    expect(resumed.length).toBeGreaterThan(0);
    expect(resumed.every((f) => f.source === 'deep')).toBe(true);
    // The frame sequence goes on from the predecessor's.
    expect(resumed[0]!.seq).toBeGreaterThan(0);
    expect(speeches.find((s) => s.source === 'deep')!.text).toBe(answer);
  }, 30_000);

  it('a speaker that dies before the turn’s first audio: the successor speaks the whole answer', async () => {
    // The first instance's synthesis takes 2 s to start: it dies with the whole turn received and nothing sent.
    const slow = await instances.add(STAGE, ttsActor(new FakeTTS({ msPerChar: 20, ttfbMs: 2000 }), { fillers: [] }));
    const { first, second, sid, frames, speeches } = await twoSpeakers('tts-takeover-early', slow);
    const answer = 'It is four o clock.';
    client.serveSession(sessionRequests.replyFastReplay, sid, () => ({ text: 'Sure.', nextSeq: 1, done: true }));
    client.serveSession(sessionRequests.replyDeepReplay, sid, () => ({ text: answer, nextSeq: 1, done: true }));
    await client.nc.flush();
    client.publish(channels.turn, sid, { turnId: 't2', kind: 'end', text: 'time?', eouProb: 1, speechEndMs: 0 });
    client.publish(channels.replyFast, sid, { turnId: 't2', seq: 0, delta: 'Sure.', done: true });
    client.publish(channels.replyDeep, sid, { turnId: 't2', seq: 0, delta: answer, done: true });
    const state = await client.kv(BUCKETS.state);
    await waitFor(async () => (await state.get(stateKey(STAGE, sid, 'speaking')))?.operation === 'PUT', {
      timeoutMs: 5000,
      message: 'the turn kept before its first audio',
    });
    const claimed = second.claims(sid);
    await first.crash();
    await claimed;
    await waitFor(() => speeches.some((s) => s.source === 'deep'), {
      timeoutMs: 15_000,
      message: 'the answer spoken by the successor',
    });
    expect(frames.map((f) => f.text ?? '').join('')).toBe(`Sure.${answer}`);
  }, 30_000);

  it('a gateway that took the session up gets the turn again from what was heard, and nothing of an older turn', async () => {
    const speaker = await instances.add(STAGE, ttsActor(new FakeTTS({ msPerChar: 5 }), { fillers: [] }));
    const sid = await instances.open('tts-speech-replay', {}, [STAGE]);
    const frames: AudioFrame[] = [];
    const speeches: SpeechDone[] = [];
    client.subscribeAudio('out', sid, (f) => void frames.push(f));
    client.subscribe(channels.speech, sid, (s) => void speeches.push(s));
    const answer = 'The first sentence. The second one.';
    client.serveSession(sessionRequests.replyFastReplay, sid, () => ({ text: 'Sure.', nextSeq: 1, done: true }));
    client.serveSession(sessionRequests.replyDeepReplay, sid, () => ({ text: answer, nextSeq: 1, done: true }));
    await client.nc.flush();
    client.publish(channels.turn, sid, { turnId: 't3', kind: 'end', text: 'tell me', eouProb: 1, speechEndMs: 0 });
    client.publish(channels.replyFast, sid, { turnId: 't3', seq: 0, delta: 'Sure.', done: true });
    client.publish(channels.replyDeep, sid, { turnId: 't3', seq: 0, delta: answer, done: true });
    await waitFor(() => speeches.some((s) => s.source === 'deep'), { timeoutMs: 15_000, message: 'the answer sent' });
    expect(speaker.host.sessionIds).toContain(sid);
    frames.length = 0;
    speeches.length = 0;

    // The gateway playing it died having played the opener and "The first sentence." (offset 19).
    const from = { fast: 5, deep: 19 };
    const reply = await client.requestSession(sessionRequests.speechReplay, sid, { turnId: 't3', from });
    expect(reply).toEqual({ replaying: true });
    await waitFor(() => speeches.some((s) => s.source === 'deep'), { timeoutMs: 15_000, message: 'the rest sent' });
    expect(frames.every((f) => f.turnId === 't3' && f.source === 'deep')).toBe(true);
    expect(frames.map((f) => f.text ?? '').join('')).toBe(' The second one.');
    expect(frames[0]!.textOffset).toBeGreaterThan(19);

    // A turn that is not tts's newest is not spoken again.
    client.publish(channels.turn, sid, { turnId: 't4', kind: 'end', text: 'and?', eouProb: 1, speechEndMs: 0 });
    client.publish(channels.replyFast, sid, { turnId: 't4', seq: 0, delta: 'Well.', done: true });
    client.publish(channels.replyDeep, sid, { turnId: 't4', seq: 0, delta: 'Yes.', done: true });
    await waitFor(() => speeches.some((s) => s.turnId === 't4' && s.source === 'deep'), {
      timeoutMs: 15_000,
      message: 't4 spoken',
    });
    expect(await client.requestSession(sessionRequests.speechReplay, sid, { turnId: 't3', from })).toEqual({
      replaying: false,
    });
  }, 30_000);
});
