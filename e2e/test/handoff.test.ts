import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { detachedActorContext, startStagesInProcess, type InProcessStages } from '@va/testkit';
import {
  channels,
  requests,
  type ChatMessage,
  type PlayedSegment,
  type Playout,
  type SessionId,
  type SpeechDone,
  type ToolExchange,
} from '@va/protocol';
import {
  FakeLLM,
  FakeTTS,
  FallbackLLM,
  ProviderError,
  type FakeLLMReply,
  type LLM,
  type LLMEvent,
} from '@va/providers';
import { defineTool, PROVIDER_APOLOGY, TOOL_APOLOGY, ToolRegistry } from '@va/responder';
import { ATTR, EVENT, shutdownTelemetry, SPAN, startTelemetry } from '@va/telemetry';
import { startOtlpReceiver, waitFor, type OtlpReceiver } from '@va/testkit';
import { deepResponder } from '../../services/deep-responder/src/actor.js';
import { fastResponder } from '../../services/fast-responder/src/actor.js';
import { GatewaySession } from '../../services/media-gateway/src/actor.js';
import { ttsActor } from '../../services/tts/src/actor.js';

/**
 * The opener/answer handoff with timed fakes (DESIGN §5): fast and deep responders, tts and the gateway's
 * real-time playout in one process on a real nats-server. The session clock (20 ms ticks) is what the user hears.
 */

let otlp: OtlpReceiver;
beforeAll(async () => {
  otlp = await startOtlpReceiver();
  startTelemetry({ serviceName: 'handoff-test', endpoint: otlp.endpoint, spanExportDelayMs: 50 });
});
afterAll(async () => {
  await shutdownTelemetry();
  await otlp?.stop();
});

const OPENER = 'Let me check that for you.';
const ANSWER = 'It is forty two. That is the whole answer.';
const FILLERS = ['One moment.'];

/** A lookup that takes 1.5 s, and one that never answers (it only stops when told to). */
const slowLookup = defineTool({
  name: 'slow_lookup',
  description: 'Looks the answer up in a slow database.',
  args: z.object({}).strict(),
  run: async (_args, signal) => {
    await new Promise((resolve, reject) => {
      const timer = setTimeout(resolve, 1_500);
      signal.addEventListener('abort', () => (clearTimeout(timer), reject(signal.reason)), { once: true });
    });
    return { answer: 'forty two' };
  },
});
const stuckLookup = defineTool({
  name: 'stuck_lookup',
  description: 'Looks the answer up in a database that hangs.',
  args: z.object({}).strict(),
  timeoutMs: 300,
  run: (_args, signal) =>
    new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true })),
});

/** The deep model: calls a tool when asked to look something up, then speaks its result (or nothing on an error). */
function deepScript(messages: readonly ChatMessage[]): FakeLLMReply {
  const last = messages[messages.length - 1]!;
  if (last.role === 'tool') {
    const result = JSON.parse(last.content) as { answer?: string; error?: string };
    return result.error ? '' : `The lookup says ${result.answer}.`;
  }
  if (last.content.includes('look it up')) return { toolCalls: [{ name: 'slow_lookup' }] };
  if (last.content.includes('stuck')) return { toolCalls: [{ name: 'stuck_lookup' }] };
  return ANSWER;
}

interface Rig {
  stages: InProcessStages;
  sid: SessionId;
  gateway: GatewaySession;
  playouts: Playout[];
  speech: SpeechDone[];
  tools: ToolExchange[];
  deep: FakeLLM;
  /** Says a user turn and waits until the agent's answer has been played. */
  ask(turnId: string, text: string): Promise<{ playout: Playout; segments: PlayedSegment[] }>;
  stop(): Promise<void>;
}

async function rig(opts: {
  opener?: string;
  fastTtftMs: number;
  deepTtftMs: number;
  /** The opener's pace after its first token. Default 100 tokens/s. */
  fastTokensPerSecond?: number;
  /** Replace the scripted fakes (e.g. with a fallback chain). */
  fastLlm?: LLM;
  deepLlm?: LLM;
}): Promise<Rig> {
  const fast = new FakeLLM({
    reply: opts.opener ?? OPENER,
    ttftMs: opts.fastTtftMs,
    tokensPerSecond: opts.fastTokensPerSecond ?? 100,
  });
  const deep = new FakeLLM({ reply: deepScript, ttftMs: opts.deepTtftMs, tokensPerSecond: 100 });
  const tts = new FakeTTS({ msPerChar: 60 });
  const stages = await startStagesInProcess([
    { stage: 'fast-responder', createActor: fastResponder(opts.fastLlm ?? fast) },
    {
      stage: 'deep-responder',
      createActor: deepResponder(opts.deepLlm ?? deep, new ToolRegistry([slowLookup, stuckLookup])),
    },
    { stage: 'tts', createActor: ttsActor(tts, { fillers: FILLERS, fillerAfterMs: 500 }) },
  ]);
  const { client } = stages;
  // Stands in for session-context: no earlier turns.
  client.serve(requests.ctxGet, () => ({ messages: [], summary: null }), { queue: 'session-context' });
  const sid = await stages.open(`handoff-${Math.random().toString(36).slice(2, 8)}`);

  const ctx = await detachedActorContext(client, sid, 'media-gateway');
  const gateway = new GatewaySession(ctx, 16000);
  // The transport's clock: one 20 ms frame per tick, in real time.
  const clock = setInterval(() => gateway.tick(new Int16Array(320)), 20);
  const playouts: Playout[] = [];
  const speech: SpeechDone[] = [];
  const tools: ToolExchange[] = [];
  client.subscribe(channels.playout, sid, (p) => void playouts.push(p));
  client.subscribe(channels.speech, sid, (s) => void speech.push(s));
  client.subscribe(channels.tool, sid, (t) => void tools.push(t));
  await client.nc.flush();

  return {
    stages,
    sid,
    gateway,
    playouts,
    speech,
    tools,
    deep,
    async ask(turnId, text) {
      const at = gateway.nowMs;
      client.publish(channels.vad, sid, { kind: 'start', atMs: Math.max(0, at - 600) });
      client.publish(channels.vad, sid, { kind: 'end', atMs: at });
      client.publish(channels.turn, sid, { turnId, kind: 'end', text, eouProb: 0.9, speechEndMs: at });
      const playout = await waitFor(() => playouts.find((p) => p.turnId === turnId && p.done), {
        timeoutMs: 15_000,
        message: `turn ${turnId} played`,
      });
      return { playout, segments: gateway.segments.filter((s) => s.turnId === turnId) };
    },
    async stop() {
      clearInterval(clock);
      gateway.close();
      await stages.stop();
    },
  };
}

/** The source of each stretch of audio in order, neighbours of the same source merged. */
const order = (segments: PlayedSegment[]) => segments.map((s) => s.source).filter((s, i, all) => s !== all[i - 1]);

async function rootSpanOf(turnId: string) {
  const spans = await otlp.waitForSpans((all) =>
    all.some((s) => s.name === SPAN.turn && s.attributes[ATTR.turnId] === turnId),
  );
  return spans.find((s) => s.name === SPAN.turn && s.attributes[ATTR.turnId] === turnId)!;
}

describe('opener/answer handoff (timed fakes)', () => {
  it('fast TTFT 100 ms, deep TTFT 600 ms: the opener plays first, the answer follows within 100 ms', async () => {
    const r = await rig({ fastTtftMs: 100, deepTtftMs: 600 });
    try {
      const { playout, segments } = await r.ask('handoff-1', 'what is the answer');
      expect(order(segments)).toEqual(['fast', 'deep']);
      const openerEnd = segments.filter((s) => s.source === 'fast').at(-1)!.endMs;
      const answerStart = segments.find((s) => s.source === 'deep')!.startMs;
      expect(answerStart - openerEnd).toBeGreaterThanOrEqual(0);
      expect(answerStart - openerEnd).toBeLessThanOrEqual(100);
      expect(playout.spokenText).toBe(`${OPENER} ${ANSWER}`);
      const root = await rootSpanOf('handoff-1');
      expect(root.attributes[ATTR.answerGapMs]).toBe(answerStart - openerEnd);
      expect(root.attributes[ATTR.filler]).toBeUndefined();
    } finally {
      await r.stop();
    }
  });

  it('deep TTFT 50 ms: the answer is ready first, so no opener is played', async () => {
    // The opener's sentence completes well after the answer's first one (a loaded machine skews timers by tens of ms).
    const r = await rig({ fastTtftMs: 100, deepTtftMs: 50, fastTokensPerSecond: 20 });
    try {
      const { playout, segments } = await r.ask('handoff-2', 'what is the answer');
      expect(order(segments)).toEqual(['deep']);
      expect(playout.spokenText).toBe(ANSWER);
      expect(r.speech.find((s) => s.turnId === 'handoff-2' && s.source === 'fast')?.skipped).toBe(true);
      const root = await rootSpanOf('handoff-2');
      expect(root.attributes[ATTR.answerGapMs]).toBeUndefined();
    } finally {
      await r.stop();
    }
  });

  it('a 1.5 s tool: exactly one filler, then the answer that uses the tool result', async () => {
    const r = await rig({ opener: 'Okay.', fastTtftMs: 100, deepTtftMs: 300 });
    try {
      const { playout, segments } = await r.ask('handoff-3', 'please look it up');
      expect(order(segments)).toEqual(['fast', 'filler', 'deep']);
      expect(playout.spokenText).toBe(`Okay. ${FILLERS[0]} The lookup says forty two.`);
      // The model's second request carried the call and its result.
      const second = r.deep.calls[1]!;
      expect(second.at(-2)).toMatchObject({ role: 'assistant', toolCalls: [{ name: 'slow_lookup' }] });
      expect(second.at(-1)).toMatchObject({ role: 'tool', content: '{"answer":"forty two"}' });
      // Context hears of it: one exchange on the tool channel.
      expect(r.tools).toEqual([
        expect.objectContaining({
          turnId: 'handoff-3',
          calls: [expect.objectContaining({ ok: true, result: '{"answer":"forty two"}' })],
        }),
      ]);
      const spans = await otlp.waitForSpans((all) =>
        all.some((s) => s.name === SPAN.tool && s.attributes[ATTR.turnId] === 'handoff-3'),
      );
      const tool = spans.find((s) => s.name === SPAN.tool && s.attributes[ATTR.turnId] === 'handoff-3')!;
      const generate = spans.find((s) => s.spanId === tool.parentSpanId);
      expect(generate?.name).toBe(SPAN.deepGenerate);
      expect(tool.attributes[ATTR.toolName]).toBe('slow_lookup');
      expect(tool.attributes[ATTR.toolOutcome]).toBe('ok');
      expect(tool.durationMs).toBeGreaterThanOrEqual(1_400);
      const root = await rootSpanOf('handoff-3');
      expect(root.attributes[ATTR.filler]).toBe(true);
    } finally {
      await r.stop();
    }
  });

  it('a tool that times out: a spoken apology, and the session keeps working', async () => {
    const r = await rig({ opener: 'Okay.', fastTtftMs: 100, deepTtftMs: 100 });
    try {
      const { playout } = await r.ask('handoff-4', 'the stuck one please');
      expect(playout.spokenText).toContain(TOOL_APOLOGY);
      // The model was told why: the tool message names the timeout.
      expect(r.deep.calls[1]!.at(-1)).toMatchObject({ role: 'tool', content: expect.stringContaining('timed out') });
      expect(r.tools[0]!.calls[0]).toMatchObject({ ok: false });
      const spans = await otlp.waitForSpans((all) =>
        all.some((s) => s.name === SPAN.tool && s.attributes[ATTR.turnId] === 'handoff-4'),
      );
      expect(
        spans.find((s) => s.name === SPAN.tool && s.attributes[ATTR.turnId] === 'handoff-4')!.attributes,
      ).toMatchObject({ [ATTR.toolOutcome]: 'timeout' });

      const next = await r.ask('handoff-5', 'what is the answer');
      expect(next.playout.spokenText).toContain(ANSWER);
      expect(next.playout.interrupted).toBe(false);
    } finally {
      await r.stop();
    }
  });
});

/** An LLM whose provider is down for its first `failures` calls (HTTP 500), then answers like `then`. */
function downFor(failures: number, then: LLM): LLM {
  let calls = 0;
  return {
    provider: 'flaky',
    model: 'flaky-model',
    chat(messages, opts, signal): AsyncIterable<LLMEvent> {
      if (calls++ < failures) {
        return {
          [Symbol.asyncIterator]: () => ({
            next: () => Promise.reject(new ProviderError('flaky', 'server', 'HTTP 500', { status: 500 })),
          }),
        };
      }
      return then.chat(messages, opts, signal);
    },
  };
}

describe('provider fallback within a turn (timed fakes)', () => {
  const BUDGET_MS = 300;
  const e2eOf = (r: Rig, turnId: string) => r.gateway.records.find((t) => t.turnId === turnId)!.e2eMs!;

  it('primary LLM answers 500: the secondary serves the opener in the same turn, and the span says so', async () => {
    const opener = new FakeLLM({ reply: 'Backup opener here.', ttftMs: 100, tokensPerSecond: 100 });
    const fastLlm = new FallbackLLM([downFor(Infinity, opener), opener], { ttftTimeoutMs: BUDGET_MS });
    const r = await rig({ fastTtftMs: 100, deepTtftMs: 600, fastLlm });
    try {
      const { playout } = await r.ask('fallback-1', 'what is the answer');
      expect(playout.spokenText).toBe(`Backup opener here. ${ANSWER}`);
      const spans = await otlp.waitForSpans((all) =>
        all.some((s) => s.name === SPAN.fastGenerate && s.attributes[ATTR.turnId] === 'fallback-1'),
      );
      const gen = spans.find((s) => s.name === SPAN.fastGenerate && s.attributes[ATTR.turnId] === 'fallback-1')!;
      expect(gen.attributes).toMatchObject({ [ATTR.fallback]: true, [ATTR.provider]: 'fake' });
      expect(gen.events.map((e) => e.name)).toContain(EVENT.failover);
    } finally {
      await r.stop();
    }
  });

  it('primary stalls past the first-token budget: the secondary serves, the turn is late by at most budget + 50 ms', async () => {
    const healthy = await rig({ fastTtftMs: 100, deepTtftMs: 600 });
    let normal: number;
    try {
      await healthy.ask('fallback-2a', 'what is the answer');
      normal = e2eOf(healthy, 'fallback-2a');
    } finally {
      await healthy.stop();
    }
    const stalled = new FakeLLM({ reply: OPENER, ttftMs: 10_000 });
    const backup = new FakeLLM({ reply: OPENER, ttftMs: 100, tokensPerSecond: 100 });
    const fastLlm = new FallbackLLM([stalled, backup], { ttftTimeoutMs: BUDGET_MS });
    const r = await rig({ fastTtftMs: 100, deepTtftMs: 600, fastLlm });
    try {
      const { playout } = await r.ask('fallback-2b', 'what is the answer');
      expect(playout.spokenText).toBe(`${OPENER} ${ANSWER}`);
      expect(stalled.aborted).toBe(1);
      const late = e2eOf(r, 'fallback-2b') - normal;
      expect(late).toBeLessThanOrEqual(BUDGET_MS + 50);
      // The stalled provider rests: the next turn goes straight to the backup, on time again.
      await r.ask('fallback-2c', 'what is the answer');
      expect(stalled.calls).toHaveLength(1);
    } finally {
      await r.stop();
    }
  });

  it('every provider fails: the agent says a short apology, and the next turn is answered', async () => {
    const answer = new FakeLLM({ reply: ANSWER, ttftMs: 100, tokensPerSecond: 100 });
    // Both providers of the chain are down for the first turn's requests only.
    const deepLlm = new FallbackLLM([downFor(1, answer), downFor(1, answer)], {
      ttftTimeoutMs: BUDGET_MS,
      unhealthyMs: 0,
    });
    const r = await rig({ opener: 'Okay.', fastTtftMs: 100, deepTtftMs: 100, deepLlm });
    try {
      const first = await r.ask('fallback-3', 'what is the answer');
      // (The apology is ready at once, so it may come before the opener, which is then skipped.)
      expect(first.playout.spokenText).toMatch(
        new RegExp(`^(Okay\\. )?${PROVIDER_APOLOGY.replace(/[.?']/g, '\\$&')}$`),
      );
      const second = await r.ask('fallback-4', 'what is the answer');
      expect(second.playout.spokenText).toContain(ANSWER);
      expect(second.playout.interrupted).toBe(false);
    } finally {
      await r.stop();
    }
  });
});
