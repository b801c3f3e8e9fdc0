import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { stateKey } from '@va/actor';
import { Bus } from '@va/bus';
import { ActorInstances, type ActorInstance } from '@va/testkit';
import { BUCKETS, channels, requests, sessionRequests, type Reply, type SessionId } from '@va/protocol';
import { FakeLLM } from '@va/providers';
import { ANSWER_PROMPT, createResponderActor } from '@va/responder';
import { waitFor } from '@va/testkit';

// Two deep-responder instances; the one answering a turn is crashed mid-answer (connection gone, no handover),
// and the one that takes the session over answers the turn again.

const STAGE = 'deep-responder';
const ANSWER = 'You asked about the trail. It is a long one, with a steep climb and a lake at the top of it.';

let instances: ActorInstances;
let client: Bus;

beforeAll(async () => {
  instances = await ActorInstances.start();
  client = instances.client;
  client.serve(requests.ctxGet, () => ({ messages: [], summary: null }));
  await client.nc.flush();
});
afterEach(() => instances.stopInstances());
afterAll(() => instances?.stop());

async function startInstance(): Promise<ActorInstance> {
  // Slow enough to be killed mid-answer (≈ 20 deltas at 20 a second); deterministic, as a local model at T=0.
  const llm = new FakeLLM({ reply: ANSWER, ttftMs: 20, tokensPerSecond: 20 });
  const createActor = createResponderActor({
    stage: STAGE,
    source: 'deep',
    llm,
    systemPrompt: ANSWER_PROMPT,
    historyTokens: 100,
    llmOptions: {},
  });
  return instances.add(STAGE, createActor);
}

async function openOwnedBy(id: string): Promise<{ sid: SessionId; first: ActorInstance; second: ActorInstance }> {
  const first = await startInstance();
  const sid = await instances.open(id, {}, [STAGE]);
  expect(first.host.sessionIds).toContain(sid);
  return { sid, first, second: await startInstance() };
}

async function replies(sid: SessionId): Promise<Reply[]> {
  const got: Reply[] = [];
  client.subscribe(channels.replyDeep, sid, (r) => void got.push(r));
  await client.nc.flush();
  return got;
}

/** What tts makes of the deltas: each seq once, in order (a repeated seq is a duplicate). */
function spoken(got: readonly Reply[]): string {
  const bySeq = new Map<number, string>();
  for (const r of got) if (!bySeq.has(r.seq)) bySeq.set(r.seq, r.delta);
  return [...bySeq.entries()]
    .sort(([a], [b]) => a - b)
    .map(([, d]) => d)
    .join('');
}

async function answeringState(sid: SessionId): Promise<unknown> {
  const e = await (await client.kv(BUCKETS.state)).get(stateKey(STAGE, sid, 'answering'));
  return e && e.operation === 'PUT' ? e.json() : undefined;
}

function endTurn(sid: SessionId, turnId: string): void {
  client.publish(channels.turn, sid, {
    turnId,
    kind: 'end',
    text: 'tell me about the trail',
    eouProb: 0.9,
    speechEndMs: 1,
  });
}

describe('deep-responder taken over mid-answer', () => {
  it('answers the turn again on the new owner: the answer is complete and ends once', async () => {
    const { sid, first, second } = await openOwnedBy('resp-takeover-1');
    const got = await replies(sid);
    endTurn(sid, 't1');
    await waitFor(() => got.length >= 5 && answeringState(sid));
    const claimed = second.claims(sid);
    await first.crash();
    const cut = got.length;
    await claimed;
    await waitFor(() => got.some((r) => r.done), { timeoutMs: 15_000, message: 'the retried answer ends' });
    expect(cut).toBeLessThan(got.length - 5); // the first instance stopped mid-answer
    expect(got.slice(cut)[0]?.seq).toBe(0); // answered again from the start
    expect(got.filter((r) => r.done)).toHaveLength(1);
    expect(spoken(got)).toBe(ANSWER);
    await waitFor(async () => (await answeringState(sid)) === undefined, { message: 'state cleared once answered' });
  });

  it('does not answer again a turn that was answered, or one that was cancelled', async () => {
    const { sid, first, second } = await openOwnedBy('resp-takeover-2');
    const got = await replies(sid);
    endTurn(sid, 't1');
    await waitFor(() => got.some((r) => r.done));
    endTurn(sid, 't2');
    await waitFor(() => got.filter((r) => r.turnId === 't2').length >= 3);
    client.publish(channels.control, sid, { kind: 'cancel', turnId: 't2', reason: 'barge-in' });
    await waitFor(async () => (await answeringState(sid)) === undefined, { message: 'cancelled: nothing to retry' });
    // A preview answered in full before its commit arrives: nothing to retry either.
    client.publish(channels.turn, sid, {
      turnId: 'p3',
      kind: 'preview',
      text: 'and the lake',
      eouProb: 0.9,
      speechEndMs: 2,
    });
    await waitFor(() => got.some((r) => r.turnId === 'p3' && r.done), { timeoutMs: 15_000 });
    client.publish(channels.turn, sid, {
      turnId: 'p3',
      kind: 'end',
      text: 'and the lake',
      eouProb: 0.9,
      speechEndMs: 2,
    });
    await client.nc.flush();
    await new Promise((r) => setTimeout(r, 200));
    expect(await answeringState(sid)).toBeUndefined();

    const claimed = second.claims(sid);
    await first.crash();
    await claimed;
    const before = got.length;
    // A new turn on the new owner is answered as usual; nothing of t1, t2 or p3 comes again.
    endTurn(sid, 't3');
    await waitFor(() => got.some((r) => r.turnId === 't3' && r.done));
    expect(got.slice(before).every((r) => r.turnId === 't3')).toBe(true);
  });

  it('back from a lost connection, answers the turn end it missed meanwhile (asked of the turn detector)', async () => {
    const first = await startInstance();
    const sid = await instances.open('deep-missed-turn', {}, [STAGE]);
    expect(first.host.sessionIds).toContain(sid);
    const got = await replies(sid);
    // The turn detector (played by the client): the turn it sent while the responder's server was down.
    const missed = {
      turnId: 'missed-1',
      kind: 'end' as const,
      text: 'tell me about the trail',
      eouProb: 0.9,
      speechEndMs: 1,
    };
    client.serveSession(sessionRequests.turnReplay, sid, () => ({ turns: [{ turn: missed, trace: {} }] }));
    await client.nc.flush();
    expect(got).toHaveLength(0);
    // The server goes away and comes back: every connection is made again; the turn end never came.
    await instances.nats.restart();
    await waitFor(() => got.some((r) => r.turnId === 'missed-1' && r.done), {
      timeoutMs: 20_000,
      message: 'the missed turn answered',
    });
    expect(spoken(got.filter((r) => r.turnId === 'missed-1'))).toBe(ANSWER);
  }, 40_000);
});
