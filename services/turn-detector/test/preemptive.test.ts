import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '@va/bus';
import { startStagesInProcess, type InProcessStages } from '@va/testkit';
import { channels, requests, type Control, type SessionId, type Turn } from '@va/protocol';
import { FakeLLM, FakeVAD } from '@va/providers';
import { createResponderActor, OPENER_PROMPT } from '@va/responder';
import { ATTR, EVENT, METRIC, shutdownTelemetry, SPAN, startTelemetry } from '@va/telemetry';
import { startOtlpReceiver, waitFor, type OtlpReceiver, type ReceivedSpan } from '@va/testkit';
import { STAGE, turnDetectorActor } from '../src/actor.js';

// The turn detector and a responder on a real bus, spans exported to a local OTLP receiver: preemptive
// generation is judged from the spans, as a user would judge it in Tempo.
let stages: InProcessStages;
let client: Bus;
let otlp: OtlpReceiver;
const llm = new FakeLLM({ reply: 'Let me check.', ttftMs: 20, tokensPerSecond: 100 });

beforeAll(async () => {
  otlp = await startOtlpReceiver();
  startTelemetry({
    serviceName: 'preemptive-test',
    endpoint: otlp.endpoint,
    spanExportDelayMs: 50,
    metricExportIntervalMs: 200,
  });
  const makeVad = async () => new FakeVAD({ script: (f) => (f.dbfs > -40 ? 0.95 : 0.02) });
  stages = await startStagesInProcess([
    { stage: STAGE, createActor: turnDetectorActor(makeVad) },
    {
      stage: 'fast-responder',
      createActor: createResponderActor({
        stage: 'fast-responder',
        source: 'fast',
        llm,
        systemPrompt: OPENER_PROMPT,
        historyTokens: 100,
        llmOptions: {},
      }),
    },
  ]);
  client = stages.client;
  client.serve(requests.ctxGet, () => ({ messages: [], summary: null }));
  await client.nc.flush();
});

afterAll(async () => {
  await stages?.stop();
  await shutdownTelemetry();
  await otlp?.stop();
});

/**
 * Speech then quiet, as 20 ms frames paced in real time (spans are on the wall clock), loud = speech to the
 * fake VAD; the audio clock continues across calls.
 */
function microphone(sid: SessionId) {
  let seq = 0;
  const start = performance.now();
  return async (ms: number, loud: boolean) => {
    for (let t = 0; t < ms; t += 20) {
      const samples = Int16Array.from({ length: 320 }, (_, i) =>
        loud ? Math.round(8000 * Math.sin(i / 3)) : (i % 3) - 1,
      );
      client.publishAudio('in', sid, { samples, sampleRate: 16000, seq, tsMs: seq * 20 });
      seq++;
      const wait = start + seq * 20 - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
  };
}

function transcript(sid: SessionId, text: string, final: boolean, endMs: number): void {
  client.publish(channels.transcript, sid, { text, final, stable: true, confidence: 0.9, startMs: 0, endMs });
}

/** One user turn: 600 ms of speech, the recogniser's words right after it, and quiet until the turn is committed. */
async function userTurn(
  id: string,
  preemptiveGeneration: boolean,
  words: { partial?: string; final: string },
): Promise<{ sid: SessionId; turns: Turn[]; controls: Control[] }> {
  const sid = await stages.open(id, { turn: { minDelayMs: 500, preemptiveGeneration } });
  const turns: Turn[] = [];
  const controls: Control[] = [];
  client.subscribe(channels.turn, sid, (t) => void turns.push(t));
  client.subscribe(channels.control, sid, (c) => void controls.push(c));
  await client.nc.flush();
  const send = microphone(sid);
  await send(600, true);
  await send(60, false);
  await client.nc.flush();
  if (words.partial) {
    transcript(sid, words.partial, false, 600);
    await waitFor(() => turns.length > 0);
  }
  transcript(sid, words.final, true, 600);
  await send(700, false);
  await waitFor(() => turns.some((t) => t.kind === 'end'));
  return { sid, turns, controls };
}

function spansOf(sessionId: string, name: string): ReceivedSpan[] {
  return otlp.spans().filter((s) => s.name === name && s.attributes[ATTR.sessionId] === sessionId);
}

/** When the LLM request started, counted from where the user's speech ended (the turn.detect span's start). */
async function llmStartAfterSpeechEnd(sessionId: string, turnId: string): Promise<number> {
  await otlp.waitForSpans(
    () => spansOf(sessionId, SPAN.fastGenerate).length > 0 && spansOf(sessionId, SPAN.turnDetect).length > 0,
  );
  const detect = spansOf(sessionId, SPAN.turnDetect).find((s) => s.attributes[ATTR.turnId] === turnId)!;
  const generate = spansOf(sessionId, SPAN.fastGenerate).find((s) => s.attributes[ATTR.turnId] === turnId)!;
  return generate.startMs - detect.startMs;
}

describe('preemptive generation', () => {
  it('starts the LLM before the turn is committed when the words are settled, and earlier than without', async () => {
    const on = await userTurn('pre-on', true, { final: 'what time is it' });
    const off = await userTurn('pre-off', false, { final: 'what time is it' });
    expect(on.turns.map((t) => t.kind)).toEqual(['preview', 'end']);
    expect(off.turns.map((t) => t.kind)).toEqual(['end']);
    expect(on.controls).toEqual([]);

    const onTurn = on.turns[1]!.turnId;
    const offTurn = off.turns[0]!.turnId;
    const early = await llmStartAfterSpeechEnd('pre-on', onTurn);
    const late = await llmStartAfterSpeechEnd('pre-off', offTurn);
    // Without: the request waits out the 500 ms endpointing delay; with: it starts as soon as the final is in.
    expect(late).toBeGreaterThanOrEqual(450);
    // A complete utterance with its final in ends the turn within minDelayMs (+ a frame or two) of the speech end.
    const offDetect = spansOf('pre-off', SPAN.turnDetect)[0]!;
    expect(offDetect.attributes[ATTR.eouDelayMs]).toBeGreaterThanOrEqual(500);
    expect(offDetect.attributes[ATTR.eouDelayMs]).toBeLessThanOrEqual(550);
    expect(early).toBeLessThan(late - 300);
    const detect = spansOf('pre-on', SPAN.turnDetect)[0]!;
    expect(detect.attributes[ATTR.preemptive]).toBe(true);
    const generate = spansOf('pre-on', SPAN.fastGenerate)[0]!;
    expect(generate.attributes[ATTR.preemptive]).toBe(true);
    expect(generate.startMs).toBeLessThan(detect.endMs); // before the turn was committed
    expect(generate.attributes[ATTR.wastedTokens]).toBeUndefined();
  });

  it('cancels the early request when the final differs, counts it once as wasted, and answers the final words', async () => {
    const calls = llm.calls.length;
    const run = await userTurn('pre-differ', true, { partial: 'what time', final: 'what time is it' });
    const [preview, end] = [run.turns.find((t) => t.kind === 'preview')!, run.turns.find((t) => t.kind === 'end')!];
    expect(preview.text).toBe('what time');
    expect(end.turnId).not.toBe(preview.turnId);
    expect(run.controls).toEqual([{ kind: 'cancel', turnId: preview.turnId, reason: 'preempt-mismatch' }]);

    await otlp.waitForSpans(() => spansOf('pre-differ', SPAN.fastGenerate).length === 2);
    const [early, real] = [preview.turnId, end.turnId].map((id) =>
      spansOf('pre-differ', SPAN.fastGenerate).find((s) => s.attributes[ATTR.turnId] === id)!,
    );
    expect(early!.attributes[ATTR.wastedTokens]).toBeGreaterThan(0);
    expect(early!.attributes[ATTR.cancelReason]).toBe('preempt-mismatch');
    expect(early!.events.filter((e) => e.name === EVENT.preemptiveCancel)).toHaveLength(1);
    expect(real!.attributes[ATTR.wastedTokens]).toBeUndefined();
    expect(llm.calls.slice(calls).map((m) => m[m.length - 1]!.content)).toEqual(['what time', 'what time is it']);

    // The counter: one wasted request in this process so far (this test's), however the cancel was seen.
    const wasted = await waitFor(
      () => {
        const points = otlp
          .metrics()
          .filter((m) => m.name === METRIC.preemptiveWasted)
          .flatMap((m) => m.dataPoints as { asInt?: number | string; asDouble?: number }[]);
        const last = points[points.length - 1];
        return last ? Number(last.asInt ?? last.asDouble) : undefined;
      },
      { message: 'the wasted-requests counter exported' },
    );
    expect(wasted).toBe(1);
  });

  it('a turn ended on its partial and replaced by a different final stays in one trace', async () => {
    const run = await userTurn('pre-revised', false, { partial: 'what time is it', final: 'what time was it' });
    await waitFor(() => run.turns.filter((t) => t.kind === 'end').length === 2);
    const [early, replacement] = run.turns.filter((t) => t.kind === 'end');
    expect([early!.text, replacement!.text]).toEqual(['what time is it', 'what time was it']);
    expect(run.controls).toEqual([{ kind: 'cancel', turnId: early!.turnId, reason: 'final-revised' }]);
    // Both turn-detect spans in one trace: the user said one thing, the recogniser changed its mind.
    await otlp.waitForSpans(() => spansOf('pre-revised', SPAN.turnDetect).length === 2);
    const detects = spansOf('pre-revised', SPAN.turnDetect);
    expect(detects.map((s) => s.attributes[ATTR.turnId]).sort()).toEqual([early!.turnId, replacement!.turnId].sort());
    expect(detects[0]!.traceId).toBe(detects[1]!.traceId);
  });
});
