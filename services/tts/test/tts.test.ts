import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '@va/bus';
import { startStagesInProcess, type InProcessStages } from '@va/testkit';
import { channels, type AudioFrame, type SpeechDone } from '@va/protocol';
import { FakeTTS } from '@va/providers';
import { waitFor } from '@va/testkit';
import { STAGE, ttsActor, TTS_DEFAULTS } from '../src/actor.js';

let stages: InProcessStages;
let client: Bus;

beforeAll(async () => {
  // Synthesis at a fifth of real time: fast, but slow enough for a cancel to land mid-turn.
  const tts = new FakeTTS({ msPerChar: 20, ttfbMs: 10, rtf: 0.2 });
  stages = await startStagesInProcess([{ stage: STAGE, createActor: ttsActor(tts) }]);
  client = stages.client;
});

afterAll(async () => {
  await stages?.stop();
});

async function session(id: string) {
  const sid = await stages.open(id);
  const frames: AudioFrame[] = [];
  const speech: SpeechDone[] = [];
  client.subscribeAudio('out', sid, (f) => void frames.push(f));
  client.subscribe(channels.speech, sid, (s) => void speech.push(s));
  await client.nc.flush();
  const reply = (source: 'fast' | 'deep', turnId: string, deltas: string[]) => {
    const ch = source === 'fast' ? channels.replyFast : channels.replyDeep;
    deltas.forEach((delta, seq) => client.publish(ch, sid, { turnId, seq, delta, done: false }));
    client.publish(ch, sid, { turnId, seq: deltas.length, delta: '', done: true });
  };
  return { sid, frames, speech, reply };
}

describe('tts stage', () => {
  it('speaks the opener, then the answer, never interleaved, with text offsets per source', async () => {
    const { frames, speech, reply } = await session('tts-order');
    reply('fast', 't1', ['Sure, ', 'one moment.']);
    reply('deep', 't1', ['The answer ', 'is forty two. ', 'Anything else?']);
    await waitFor(() => speech.length === 2);
    const sources = frames.map((f) => f.source);
    const firstDeep = sources.indexOf('deep');
    expect(firstDeep).toBeGreaterThan(0);
    expect(sources.slice(0, firstDeep).every((s) => s === 'fast')).toBe(true);
    expect(sources.slice(firstDeep).every((s) => s === 'deep')).toBe(true);
    expect(frames.map((f) => f.seq)).toEqual(frames.map((_, i) => i));
    expect(speech).toEqual([
      { turnId: 't1', source: 'fast', text: 'Sure, one moment.', frames: firstDeep, skipped: false },
      {
        turnId: 't1',
        source: 'deep',
        text: 'The answer is forty two. Anything else?',
        frames: frames.length - firstDeep,
        skipped: false,
      },
    ]);
    const lastDeep = frames[frames.length - 1]!;
    expect(lastDeep.textOffset).toBe('The answer is forty two. Anything else?'.length);
    // Each frame carries the words its audio brings in: in order, a source's frames spell its text.
    const spelled = (source: string) =>
      frames
        .filter((f) => f.source === source)
        .map((f) => f.text ?? '')
        .join('');
    expect(spelled('fast')).toBe('Sure, one moment.');
    expect(spelled('deep')).toBe('The answer is forty two. Anything else?');
  });

  it('skips the opener when the answer’s audio is ready first', async () => {
    const { frames, speech, reply } = await session('tts-skip');
    reply('deep', 't2', ['Forty two.']);
    await waitFor(() => frames.length > 0);
    reply('fast', 't2', ['Let me check.']); // too late: the answer is already speaking
    await waitFor(() => speech.length === 2);
    expect(speech[0]).toMatchObject({ source: 'fast', skipped: true, frames: 0 });
    expect(speech[1]).toMatchObject({ source: 'deep', skipped: false, text: 'Forty two.' });
    expect(frames.every((f) => f.source === 'deep')).toBe(true);
  });

  it('stops speaking a cancelled turn', async () => {
    const { sid, frames, speech, reply } = await session('tts-cancel');
    const long = Array.from({ length: 30 }, (_, i) => `Sentence number ${i} is here. `);
    reply('deep', 't3', long);
    await waitFor(() => frames.length > 0);
    client.publish(channels.control, sid, { kind: 'cancel', turnId: 't3', reason: 'barge-in' });
    await client.nc.flush();
    await new Promise((r) => setTimeout(r, 300));
    const after = frames.length;
    await new Promise((r) => setTimeout(r, 300));
    expect(frames.length).toBe(after);
    // All the text would be many seconds of audio: far less was sent, and the answer never reports done
    // (the opener, which never came, was already reported skipped when the answer started).
    expect(frames.length).toBeLessThan(long.join('').length);
    expect(speech.map((s) => `${s.source}:${s.skipped}`)).toEqual(['fast:true']);
  });

  it('speaks one filler when the answer is late, after the opener, and then the answer', async () => {
    const { sid, frames, speech, reply } = await session('tts-filler');
    client.publish(channels.turn, sid, { turnId: 't4', kind: 'end', text: 'look it up', eouProb: 1, speechEndMs: 0 });
    reply('fast', 't4', ['Okay.']);
    // Longer than the opener plus TTS_DEFAULTS.fillerAfterMs of silence: a filler is due.
    await waitFor(() => frames.some((f) => f.source === 'filler'), { timeoutMs: 5_000, message: 'a filler' });
    await new Promise((r) => setTimeout(r, 1_000));
    reply('deep', 't4', ['Here it is.']);
    await waitFor(() => speech.some((s) => s.source === 'deep'));
    const order = frames.map((f) => f.source).filter((s, i, all) => s !== all[i - 1]);
    expect(order).toEqual(['fast', 'filler', 'deep']);
    const fillers = speech.filter((s) => s.source === 'filler');
    expect(fillers).toHaveLength(1);
    expect(TTS_DEFAULTS.fillers).toContain(fillers[0]!.text);
  });

  it('never speaks a filler while the user is speaking', async () => {
    const { sid, frames, speech, reply } = await session('tts-no-filler');
    client.publish(channels.turn, sid, { turnId: 't5', kind: 'end', text: 'look it up', eouProb: 1, speechEndMs: 0 });
    client.publish(channels.vad, sid, { kind: 'start', atMs: 100 });
    reply('fast', 't5', ['Okay.']);
    await waitFor(() => speech.some((s) => s.source === 'fast'));
    await new Promise((r) => setTimeout(r, TTS_DEFAULTS.fillerAfterMs + 700));
    reply('deep', 't5', ['Here it is.']);
    await waitFor(() => speech.some((s) => s.source === 'deep'));
    expect(frames.some((f) => f.source === 'filler')).toBe(false);
    expect(speech.map((s) => s.source)).toEqual(['fast', 'deep']);
  });
});
