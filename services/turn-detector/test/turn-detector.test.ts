import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '@va/bus';
import { startStagesInProcess, type InProcessStages } from '@va/testkit';
import { channels, sessionRequests, type Control, type SessionId, type Turn, type Vad } from '@va/protocol';
import { FakeVAD } from '@va/providers';
import { waitFor } from '@va/testkit';
import { STAGE, turnDetectorActor } from '../src/actor.js';
import { endOfUtteranceProbability, soundsUnfinished } from '@va/providers';
import { endpointDelayMs } from '../src/endpointing.js';

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

function partial(sid: SessionId, text: string, startMs: number, endMs: number, stable = false): void {
  client.publish(channels.transcript, sid, { text, final: false, stable, confidence: 0.5, startMs, endMs });
}

/** Everything the turn detector says on a session: turn events, cancels and VAD events, in order. */
async function watch(sid: SessionId) {
  const seen = { vads: [] as Vad[], turns: [] as Turn[], controls: [] as Control[] };
  client.subscribe(channels.vad, sid, (v) => void seen.vads.push(v));
  client.subscribe(channels.turn, sid, (t) => void seen.turns.push(t));
  client.subscribe(channels.control, sid, (c) => void seen.controls.push(c));
  await client.nc.flush();
  return {
    ...seen,
    kinds: () => seen.turns.map((t) => t.kind),
    of: (kind: Turn['kind']) => seen.turns.filter((t) => t.kind === kind),
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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
  it('reports speech start/end, ends the turn on the final transcript, and pauses the agent when the user talks over it', async () => {
    const sid = await stages.open('td-1', { turn: { preemptiveGeneration: false } });
    const w = await watch(sid);
    const send = microphone(sid);
    send(200, false);
    send(600, true); // speech 200..800 ms
    send(600, false);
    await waitFor(() => w.vads.length === 2);
    expect(w.vads.map((v) => v.kind)).toEqual(['start', 'end']);
    expect(w.vads[0]!.atMs).toBeGreaterThanOrEqual(180);
    expect(w.vads[0]!.atMs).toBeLessThanOrEqual(260);
    expect(w.vads[1]!.atMs).toBeGreaterThanOrEqual(780);
    expect(w.vads[1]!.atMs).toBeLessThanOrEqual(860);
    expect(w.turns).toEqual([]); // no words yet: the turn waits for the recogniser

    final(sid, 'what time is it', 200, 800);
    await waitFor(() => w.turns.length === 1);
    expect(w.turns[0]).toMatchObject({ kind: 'end', text: 'what time is it' });
    // Counted from the first quiet frame (20 ms frames vs the VAD's 32 ms windows).
    expect(Math.abs(w.turns[0]!.speechEndMs - w.vads[1]!.atMs)).toBeLessThanOrEqual(40);
    const turnId = w.turns[0]!.turnId;

    // The user talks over the answer: a barge-in (the agent pauses) after ~80 ms of speech, dated at its start…
    send(400, true); // 1400..1800 ms
    await waitFor(() => w.turns.length === 2);
    expect(w.turns[1]).toMatchObject({ kind: 'barge-in', turnId });
    expect(w.turns[1]!.speechEndMs).toBeGreaterThanOrEqual(1380);
    expect(w.turns[1]!.speechEndMs).toBeLessThanOrEqual(1460);
    expect(w.controls).toEqual([]); // …but no words yet: nothing is cancelled
    // …and the first word ends the agent's turn everywhere.
    partial(sid, 'wait', 1400, 1700);
    await waitFor(() => w.controls.length === 1);
    expect(w.controls[0]).toEqual({ kind: 'cancel', turnId, reason: 'barge-in' });

    // A responder back from a lost connection asks for the turns sent meanwhile: each of them, in order.
    const { turns: sent } = await client.requestSession(sessionRequests.turnReplay, sid, {});
    expect(sent.map((s) => s.turn)).toEqual(w.turns);
  });

  it('resumes the agent after a cough: a barge-in with no words by the time the user is quiet again', async () => {
    const sid = await stages.open('td-2', { turn: { falseInterruptionMs: 400, preemptiveGeneration: false } });
    const w = await watch(sid);
    const send = microphone(sid);
    send(600, true);
    send(400, false);
    final(sid, 'tell me a story', 0, 600);
    await waitFor(() => w.turns.length === 1);
    const turnId = w.turns[0]!.turnId;

    send(300, true); // a 300 ms cough during the answer
    await waitFor(() => w.kinds().includes('barge-in'));
    send(1000, false);
    await waitFor(() => w.kinds().includes('resume'));
    expect(w.kinds()).toEqual(['end', 'barge-in', 'resume']);
    expect(w.turns[2]!.turnId).toBe(turnId);
    await sleep(1700); // the cough's own end-of-turn window passes: no words, no turn, nothing cancelled
    expect(w.controls).toEqual([]);
    expect(w.kinds()).toEqual(['end', 'barge-in', 'resume']);

    // After the resume the turn is still the agent's: real words over it are a barge-in again.
    send(400, true);
    await waitFor(() => w.of('barge-in').length === 2);
    final(sid, 'stop', 2600, 2900);
    await waitFor(() => w.controls.length === 1);
    expect(w.controls[0]).toEqual({ kind: 'cancel', turnId, reason: 'barge-in' });
  });

  it('ends the turn on a finished-sounding final before the VAD confirms the silence; a second question is its own turn', async () => {
    const sid = await stages.open('td-3', { turn: { preemptiveGeneration: false } });
    const w = await watch(sid);
    const send = microphone(sid);
    send(200, false);
    send(600, true); // speech 200..800 ms
    send(200, false); // 200 ms of quiet: less than the VAD's 300 ms silence window
    await waitFor(() => w.vads.length === 1);
    final(sid, 'what time is it', 200, 800);
    await waitFor(() => w.turns.length === 1);
    expect(w.turns[0]).toMatchObject({ kind: 'end', text: 'what time is it' });
    expect(w.turns[0]!.speechEndMs).toBeGreaterThanOrEqual(780);
    expect(w.turns[0]!.speechEndMs).toBeLessThanOrEqual(840);
    expect(w.vads.map((v) => v.kind)).toEqual(['start']); // the VAD had not confirmed the end yet

    // Another question right away: it interrupts the answer to the first, and is a turn of its own.
    send(400, true);
    await waitFor(() => w.turns.length === 2);
    expect(w.turns[1]).toMatchObject({ kind: 'barge-in', turnId: w.turns[0]!.turnId });
    send(600, false);
    final(sid, 'and in tokyo', 1000, 1400);
    await waitFor(() => w.turns.length === 3);
    expect(w.controls).toEqual([{ kind: 'cancel', turnId: w.turns[0]!.turnId, reason: 'barge-in' }]);
    expect(w.turns[2]).toMatchObject({ kind: 'end', text: 'and in tokyo' });
  });

  it('carries the words of a turn sent unfinished (after maxDelayMs) into the speech that continues it', async () => {
    const sid = await stages.open('td-3b', { turn: { maxDelayMs: 400 } });
    const w = await watch(sid);
    const send = microphone(sid);
    send(600, true);
    send(500, false);
    final(sid, 'i need a table with', 0, 600);
    await waitFor(() => w.of('end').length === 1);
    expect(w.of('end')[0]!.text).toBe('i need a table with');
    send(600, true); // the user goes on within the continuation window
    send(300, false);
    final(sid, 'a view of the sea', 1100, 1700);
    await waitFor(() => w.of('end').length === 2);
    expect(w.controls).toContainEqual({ kind: 'cancel', turnId: w.of('end')[0]!.turnId, reason: 'barge-in' });
    expect(w.of('end')[1]!.text).toBe('i need a table with a view of the sea');
  });

  it('waits through a 700 ms pause after a trailing "with", and keeps both parts in one turn', async () => {
    const sid = await stages.open('td-4');
    const w = await watch(sid);
    const send = microphone(sid);
    send(600, true);
    send(700, false);
    final(sid, 'i need a table with', 0, 600);
    await sleep(300);
    expect(w.turns).toEqual([]); // 700 ms of quiet (and counting) is not enough after "with"; nor worth a preview
    send(600, true);
    send(400, false);
    final(sid, 'a view of the sea', 1300, 1900);
    await waitFor(() => w.of('end').length === 1);
    expect(w.of('end')[0]!.text).toBe('i need a table with a view of the sea');
  });

  it('takes its turn-taking tunables per session from session.open', async () => {
    const sid = await stages.open('td-5', {
      turn: { minDelayMs: 1000, maxDelayMs: 1200, preemptiveGeneration: false },
    });
    const w = await watch(sid);
    const send = microphone(sid);
    send(600, true);
    send(300, false);
    final(sid, 'what time is it', 0, 600);
    await sleep(300);
    expect(w.turns).toEqual([]); // this session asked for a full second of quiet
    await waitFor(() => w.turns.length === 1);
    expect(w.turns[0]).toMatchObject({ kind: 'end', text: 'what time is it' });
  });
});

describe('preemptive generation', () => {
  it('previews settled words before the endpointing delay is over, and commits the same turn id', async () => {
    const sid = await stages.open('td-p1', { turn: { minDelayMs: 800 } });
    const w = await watch(sid);
    const send = microphone(sid);
    send(600, true);
    send(100, false);
    final(sid, 'what time is it', 0, 600);
    await waitFor(() => w.turns.length === 1);
    expect(w.turns[0]).toMatchObject({ kind: 'preview', text: 'what time is it' });
    send(900, false);
    await waitFor(() => w.turns.length === 2);
    expect(w.turns[1]).toMatchObject({ kind: 'end', text: 'what time is it', turnId: w.turns[0]!.turnId });
    expect(w.controls).toEqual([]);
  });

  it('cancels the preview when the committed words differ, and when the user goes on', async () => {
    const sid = await stages.open('td-p2', { turn: { minDelayMs: 800 } });
    const w = await watch(sid);
    const send = microphone(sid);
    send(600, true);
    send(100, false);
    partial(sid, 'what time', 0, 600, true); // stable, and wrong
    await waitFor(() => w.turns.length === 1);
    expect(w.turns[0]).toMatchObject({ kind: 'preview', text: 'what time' });
    final(sid, 'what time is it', 0, 600);
    send(900, false);
    await waitFor(() => w.of('end').length === 1);
    const preview = w.turns[0]!.turnId;
    expect(w.controls).toEqual([{ kind: 'cancel', turnId: preview, reason: 'preempt-mismatch' }]);
    expect(w.of('end')[0]!.turnId).not.toBe(preview);
    expect(w.of('end')[0]!.text).toBe('what time is it');

    // A new user turn: previewed, then the user goes on talking before it is committed.
    send(600, true); // 1600..2200
    send(100, false);
    final(sid, 'thanks', 1600, 2200);
    await waitFor(() => w.of('preview').length === 2);
    // Its words ended the agent's answer to the first turn (they were in before the VAD paused it).
    expect(w.controls).toContainEqual({ kind: 'cancel', turnId: w.of('end')[0]!.turnId, reason: 'barge-in' });
    const second = w.of('preview')[1]!.turnId;
    send(400, true);
    await waitFor(() => w.controls.some((c) => c.turnId === second));
    expect(w.controls.filter((c) => c.turnId === second)).toEqual([
      { kind: 'cancel', turnId: second, reason: 'preempt-abandoned' },
    ]);
  });
});
