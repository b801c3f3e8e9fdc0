import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { stateKey } from '@va/actor';
import { ActorInstances, type ActorInstance } from '@va/testkit';
import { Bus } from '@va/bus';
import {
  BUCKETS,
  channels,
  sessionRequests,
  type Control,
  type SessionId,
  type Transcript,
  type Turn,
} from '@va/protocol';
import { FakeVAD } from '@va/providers';
import { waitFor } from '@va/testkit';
import { STAGE, turnDetectorActor } from '../src/actor.js';

// Two turn-detector instances on a real nats-server; one is crashed (connection gone, no handover) mid-session
// and the other takes the session over once the lease expires — with the turn in flight as the first left it.

let instances: ActorInstances;
let client: Bus;

beforeAll(async () => {
  instances = await ActorInstances.start();
  client = instances.client;
});
afterEach(() => instances.stopInstances());
afterAll(() => instances?.stop());

// Loud frames are speech: the VAD model is not what this test is about.
const startInstance = () =>
  instances.add(
    STAGE,
    turnDetectorActor(async () => new FakeVAD({ script: (f) => (f.dbfs > -40 ? 0.95 : 0.02) })),
  );

async function watch(sid: SessionId) {
  const turns: Turn[] = [];
  const controls: Control[] = [];
  client.subscribe(channels.turn, sid, (t) => void turns.push(t));
  client.subscribe(channels.control, sid, (c) => void controls.push(c));
  await client.nc.flush();
  return { turns, controls, of: (kind: Turn['kind']) => turns.filter((t) => t.kind === kind) };
}

/** Microphone audio on the session's clock: loud is speech, quiet is near-silence. */
function microphone(sid: SessionId) {
  let seq = 0;
  return {
    send(ms: number, loud: boolean) {
      for (let t = 0; t < ms; t += 20) {
        const samples = Int16Array.from({ length: 320 }, (_, i) =>
          loud ? Math.round(8000 * Math.sin(i / 3)) : (i % 3) - 1,
        );
        client.publishAudio('in', sid, { samples, sampleRate: 16000, seq, tsMs: seq * 20 });
        seq++;
      }
    },
    get atMs() {
      return seq * 20;
    },
  };
}

function final(sid: SessionId, text: string, startMs: number, endMs: number): void {
  client.publish(channels.transcript, sid, { text, final: true, stable: true, confidence: 0.9, startMs, endMs });
}

/** Opens a session owned by `first` (started before `second`, so the claim is its), then starts `second`. */
async function openOwnedBy(id: string): Promise<{ sid: SessionId; first: ActorInstance; second: ActorInstance }> {
  const first = await startInstance();
  const sid = await instances.open(id, { turn: { preemptiveGeneration: false } }, [STAGE]);
  expect(first.host.sessionIds).toContain(sid);
  const second = await startInstance();
  return { sid, first, second };
}

async function savedTurnState(sid: SessionId): Promise<Record<string, unknown> | undefined> {
  const e = await (await client.kv(BUCKETS.state)).get(stateKey(STAGE, sid, 'turn'));
  return e && e.operation === 'PUT' ? (e.json() as Record<string, unknown>) : undefined;
}

describe('turn-detector taken over by another instance', () => {
  it('knows the agent turn (a barge-in over it) and what was already answered (late words are not a new turn)', async () => {
    const { sid, first, second } = await openOwnedBy('td-takeover-1');
    const w = await watch(sid);
    const mic = microphone(sid);
    mic.send(200, false);
    mic.send(600, true); // speech 200..800 ms
    mic.send(400, false);
    final(sid, 'what time is it', 200, 800);
    await waitFor(() => w.of('end').length === 1);
    const answered = w.of('end')[0]!;
    await waitFor(async () => (await savedTurnState(sid))?.agentTurn === answered.turnId);

    const tookOver = second.claims(sid);
    await first.crash();
    await tookOver;
    mic.send(200, false);
    // A late repeat of the answered words: audio the first instance already turned into a turn.
    final(sid, 'what time is it', 200, 800);
    // The user talks over the agent's answer: the new owner pauses it, and the first word cancels it.
    mic.send(300, true);
    await waitFor(() => w.of('barge-in').length === 1);
    expect(w.of('barge-in')[0]!.turnId).toBe(answered.turnId);
    final(sid, 'stop', mic.atMs - 300, mic.atMs);
    await waitFor(() => w.controls.length === 1);
    expect(w.controls[0]).toEqual({ kind: 'cancel', turnId: answered.turnId, reason: 'barge-in' });
    mic.send(600, false);
    await waitFor(() => w.of('end').length === 2);
    expect(w.of('end')[1]!.text).toBe('stop'); // not "what time is it stop"
  });

  it('ends a turn whose speech ended while no instance held the session, on the words the recogniser heard', async () => {
    const { sid, first, second } = await openOwnedBy('td-takeover-2');
    const w = await watch(sid);
    const mic = microphone(sid);
    mic.send(200, false);
    mic.send(400, true); // speech from 200 ms; the VAD has heard its start…
    const tookOver = second.claims(sid);
    await first.crash();
    mic.send(600, true); // …the rest of it (to 1200 ms) and the quiet after reach no turn detector
    mic.send(400, false);
    await tookOver;
    mic.send(400, false); // the new owner hears only quiet
    final(sid, 'book a table for two', 200, 1200);
    await waitFor(() => w.of('end').length === 1, { message: 'the turn ended by the new owner' });
    expect(w.of('end')[0]).toMatchObject({ text: 'book a table for two', speechEndMs: 1200 });
  });

  it('reads back from stt a final published while no instance held the session, and ends the turn on it', async () => {
    const { sid, first, second } = await openOwnedBy('td-takeover-3');
    const w = await watch(sid);
    const mic = microphone(sid);
    // What stt would answer: its recent finals after the point asked for.
    const finals: Transcript[] = [];
    const asked: number[] = [];
    client.serveSession(sessionRequests.transcriptReplay, sid, ({ afterMs }) => {
      asked.push(afterMs);
      return { finals: finals.filter((t) => t.endMs > afterMs) };
    });
    await client.nc.flush();
    mic.send(200, false);
    mic.send(600, true); // speech 200..800 ms, heard by the first instance
    const claimed = second.claims(sid);
    await first.crash();
    mic.send(400, false);
    const missed: Transcript = {
      text: 'what time is it',
      final: true,
      stable: true,
      confidence: 0.9,
      startMs: 200,
      endMs: 800,
    };
    finals.push(missed);
    client.publish(channels.transcript, sid, missed); // to nobody: no turn-detector holds the session
    await claimed;
    mic.send(400, false);
    await waitFor(() => w.of('end').length === 1, { message: 'the turn ended by the new owner' });
    expect(w.of('end')[0]).toMatchObject({ text: 'what time is it', speechEndMs: 800 });
    expect(asked).toEqual([-1]); // nothing answered yet in this session: every final
  });
});
