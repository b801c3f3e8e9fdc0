import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { channels, type SessionClose } from '@va/protocol';
import { FakeVAD, heuristicEou } from '@va/providers';
import { ActorInstances, waitFor } from '@va/testkit';
import { STAGE, turnDetectorActor } from '../src/actor.js';

// A session whose gateway died and that no other gateway resumed: no microphone frame comes any more. The turn
// detector, which hears every frame, closes it, so every stage releases it.

let instances: ActorInstances;

beforeAll(async () => {
  instances = await ActorInstances.start();
});
afterAll(() => instances?.stop());

describe('a session nobody feeds audio to', () => {
  it('is closed by the turn detector once no frame has come for orphanAfterMs; one that is fed stays open', async () => {
    const makeVad = async () => new FakeVAD({ script: () => 0.02 });
    const host = await instances.add(STAGE, turnDetectorActor(makeVad, {}, heuristicEou, { orphanAfterMs: 400 }));
    const { client } = instances;
    const closes: SessionClose[] = [];
    client.subscribeGlobal(channels.sessionClose, (m) => void closes.push(m));
    await client.nc.flush();
    const [fed, orphan] = [await instances.open('fed', {}, [STAGE]), await instances.open('orphan', {}, [STAGE])];
    expect(host.host.sessionIds).toEqual(expect.arrayContaining([fed, orphan]));

    let seq = 0;
    const feeding = setInterval(() => {
      client.publishAudio('in', fed, { samples: new Int16Array(320), sampleRate: 16000, seq, tsMs: seq * 20 });
      seq++;
    }, 20);
    try {
      await waitFor(() => closes.some((c) => c.sessionId === orphan), { timeoutMs: 5000, message: 'orphan closed' });
      expect(closes.find((c) => c.sessionId === orphan)!.reason).toBe('gateway gone');
      await waitFor(() => !host.host.sessionIds.includes(orphan), { message: 'released by its owner' });
      // Three times the timeout later, the fed session is still open.
      await new Promise((r) => setTimeout(r, 1200));
      expect(closes.map((c) => c.sessionId)).not.toContain(fed);
      expect(host.host.sessionIds).toContain(fed);
    } finally {
      clearInterval(feeding);
    }
  });
});
