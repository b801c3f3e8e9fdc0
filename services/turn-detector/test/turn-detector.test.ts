import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '@va/bus';
import { startStagesInProcess, type InProcessStages } from '@va/harness';
import { channels, type Control, type SessionId, type Turn, type Vad } from '@va/protocol';
import { FakeVAD } from '@va/providers';
import { waitFor } from '@va/testkit';
import { STAGE, turnDetectorActor } from '../src/actor.js';
import { endOfUtteranceProbability, endpointDelayMs, soundsUnfinished } from '../src/endpointing.js';

let stages: InProcessStages;
let client: Bus;

beforeAll(async () => {
  // Loud frames are speech: the VAD model is not what this test is about.
  const makeVad = async () => new FakeVAD({ script: (f) => (f.dbfs > -40 ? 0.95 : 0.02) });
  stages = await startStagesInProcess([{ stage: STAGE, createActor: turnDetectorActor(makeVad) }]);
  client = stages.client;
});

afterAll(async () => {
  await stages?.stop();
});

/** A final transcript of the user's words between two points of the audio clock. */
function final(sid: SessionId, text: string, startMs: number, endMs: number): void {
  client.publish(channels.transcript, sid, { text, final: true, stable: true, confidence: 0.9, startMs, endMs });
}

/** Publishes `ms` of microphone audio, loud (speech to the fake VAD) or near-silent, continuing the clock. */
function microphone(sid: SessionId) {
  let seq = 0;
  return (ms: number, loud: boolean) => {
    for (let t = 0; t < ms; t += 20) {
      const samples = Int16Array.from({ length: 320 }, (_, i) =>
        loud ? Math.round(8000 * Math.sin(i / 3)) : (i % 3) - 1,
      );
      client.publishAudio('in', sid, { samples, sampleRate: 16000, seq, tsMs: seq * 20 });
      seq++;
    }
  };
}

describe('end-of-turn cues', () => {
  it('turn the score into the quiet a turn needs: min for finished, max for unfinished', () => {
    const opts = { minDelayMs: 150, maxDelayMs: 1500 };
    expect(endpointDelayMs(1, opts)).toBe(150);
    expect(endpointDelayMs(0, opts)).toBe(1500);
    expect(endpointDelayMs(endOfUtteranceProbability('what time is it'), opts)).toBeLessThan(200);
    expect(endpointDelayMs(endOfUtteranceProbability('i need a table with'), opts)).toBeGreaterThan(1000);
  });

  it('hears unfinished sentences', () => {
    expect(soundsUnfinished('i want to go to the')).toBe(true);
    expect(soundsUnfinished('book a table for two and')).toBe(true);
    expect(soundsUnfinished('book a table for two')).toBe(false);
    expect(soundsUnfinished('is it raining?')).toBe(false);
    expect(endOfUtteranceProbability('is it raining?')).toBeGreaterThan(endOfUtteranceProbability('and then the'));
    expect(endOfUtteranceProbability('')).toBe(0);
  });
});

describe('turn-detector stage', () => {
  it('reports speech start/end, ends the turn on the final transcript, and detects a barge-in', async () => {
    const sid = await stages.open('td-1');
    const vads: Vad[] = [];
    const turns: Turn[] = [];
    const controls: Control[] = [];
    client.subscribe(channels.vad, sid, (v) => void vads.push(v));
    client.subscribe(channels.turn, sid, (t) => void turns.push(t));
    client.subscribe(channels.control, sid, (c) => void controls.push(c));
    await client.nc.flush();

    const send = microphone(sid);
    send(200, false);
    send(600, true); // speech 200..800 ms
    send(600, false);
    await waitFor(() => vads.length === 2);
    expect(vads.map((v) => v.kind)).toEqual(['start', 'end']);
    expect(vads[0]!.atMs).toBeGreaterThanOrEqual(180);
    expect(vads[0]!.atMs).toBeLessThanOrEqual(260);
    expect(vads[1]!.atMs).toBeGreaterThanOrEqual(780);
    expect(vads[1]!.atMs).toBeLessThanOrEqual(860);
    expect(turns).toEqual([]); // no words yet: the turn waits for the recogniser

    final(sid, 'what time is it', 200, 800);
    await waitFor(() => turns.length === 1);
    expect(turns[0]).toMatchObject({ kind: 'end', text: 'what time is it' });
    // Counted from the first quiet frame (20 ms frames vs the VAD's 32 ms windows).
    expect(Math.abs(turns[0]!.speechEndMs - vads[1]!.atMs)).toBeLessThanOrEqual(40);
    const turnId = turns[0]!.turnId;

    // The user talks over the answer: barge-in for that turn, and a cancel every stage obeys.
    send(400, true);
    await waitFor(() => turns.length === 2 && controls.length === 1);
    expect(turns[1]).toMatchObject({ kind: 'barge-in', turnId });
    expect(controls[0]).toEqual({ kind: 'cancel', turnId, reason: 'barge-in' });
  });

  it('ends the turn on a finished-sounding final before the VAD confirms the silence, and carries words over if the user goes on', async () => {
    const sid = await stages.open('td-3');
    const vads: Vad[] = [];
    const turns: Turn[] = [];
    client.subscribe(channels.vad, sid, (v) => void vads.push(v));
    client.subscribe(channels.turn, sid, (t) => void turns.push(t));
    await client.nc.flush();
    const send = microphone(sid);
    send(200, false);
    send(600, true); // speech 200..800 ms
    send(200, false); // 200 ms of quiet: less than the VAD's 300 ms silence window
    await waitFor(() => vads.length === 1);
    final(sid, 'what time is it', 200, 800);
    await waitFor(() => turns.length === 1);
    expect(turns[0]).toMatchObject({ kind: 'end', text: 'what time is it' });
    expect(turns[0]!.speechEndMs).toBeGreaterThanOrEqual(780);
    expect(turns[0]!.speechEndMs).toBeLessThanOrEqual(840);
    expect(vads.map((v) => v.kind)).toEqual(['start']); // the VAD had not confirmed the end yet

    // The user goes on: the early turn is interrupted, and its words start the next one.
    send(400, true);
    await waitFor(() => turns.length === 2);
    expect(turns[1]).toMatchObject({ kind: 'barge-in', turnId: turns[0]!.turnId });
    send(600, false);
    final(sid, 'in tokyo', 1000, 1400);
    await waitFor(() => turns.length === 3);
    expect(turns[2]).toMatchObject({ kind: 'end', text: 'what time is it in tokyo' });
  });

  it('waits through a 700 ms pause after a trailing "with", and keeps both parts in one turn', async () => {
    const sid = await stages.open('td-4');
    const turns: Turn[] = [];
    client.subscribe(channels.turn, sid, (t) => void turns.push(t));
    await client.nc.flush();
    const send = microphone(sid);
    send(600, true);
    send(700, false);
    final(sid, 'i need a table with', 0, 600);
    await new Promise((r) => setTimeout(r, 300));
    expect(turns).toEqual([]); // 700 ms of quiet (and counting) is not enough after "with"
    send(600, true);
    send(400, false);
    final(sid, 'a view of the sea', 1300, 1900);
    await waitFor(() => turns.length === 1);
    expect(turns[0]!.text).toBe('i need a table with a view of the sea');
  });

  it('takes its turn-taking tunables per session from session.open', async () => {
    const sid = await stages.open('td-5', { turn: { minDelayMs: 1000, maxDelayMs: 1200 } });
    const turns: Turn[] = [];
    client.subscribe(channels.turn, sid, (t) => void turns.push(t));
    await client.nc.flush();
    const send = microphone(sid);
    send(600, true);
    send(300, false);
    final(sid, 'what time is it', 0, 600);
    await new Promise((r) => setTimeout(r, 300));
    expect(turns).toEqual([]); // this session asked for a full second of quiet
    await waitFor(() => turns.length === 1);
    expect(turns[0]).toMatchObject({ kind: 'end', text: 'what time is it' });
  });
});
