import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Bus } from '@va/bus';
import { startStagesInProcess, type InProcessStages } from '@va/testkit';
import { channels, requests, type Reply } from '@va/protocol';
import { FakeLLM } from '@va/providers';
import { ANSWER_PROMPT, createResponderActor, defineTool, ToolRegistry } from '@va/responder';
import { ATTR, shutdownTelemetry, SPAN, startTelemetry } from '@va/telemetry';
import { startOtlpReceiver, waitFor, type OtlpReceiver } from '@va/testkit';

// What the model passes to a tool is LLM text, often the user's own words: a tool call that fails on its
// arguments must not carry them into the trace (only with VA_TRACE_TEXT=1).
const USER = 'remind me to call doctor Higgins about my knee';
// Plain words where JSON belongs: the parser's message quotes them.
const ARGS = 'Higgins knee appointment';

let stages: InProcessStages;
let client: Bus;
let otlp: OtlpReceiver;
const llm = new FakeLLM({
  reply: (messages) =>
    messages.at(-1)!.role === 'tool'
      ? 'I could not save that reminder.'
      : { toolCalls: [{ name: 'save_reminder', arguments: ARGS }] },
  ttftMs: 5,
  tokensPerSecond: 500,
});
const reminder = defineTool({
  name: 'save_reminder',
  description: 'Saves a reminder.',
  args: z.object({ note: z.string() }),
  run: async () => ({ saved: true }),
});

beforeAll(async () => {
  otlp = await startOtlpReceiver();
  startTelemetry({ serviceName: 'privacy-test', endpoint: otlp.endpoint, spanExportDelayMs: 50 });
  stages = await startStagesInProcess([
    {
      stage: 'deep-responder',
      createActor: createResponderActor({
        stage: 'deep-responder',
        source: 'deep',
        llm,
        systemPrompt: ANSWER_PROMPT,
        historyTokens: 100,
        llmOptions: {},
        tools: new ToolRegistry([reminder]),
      }),
    },
  ]);
  client = stages.client;
  client.serve(requests.ctxGet, () => ({ messages: [], summary: null }));
  await client.nc.flush();
});

afterAll(async () => {
  delete process.env.VA_TRACE_TEXT;
  await stages?.stop();
  await shutdownTelemetry();
  await otlp?.stop();
});

async function turn(sessionName: string, turnId: string) {
  const sid = await stages.open(sessionName);
  const replies: Reply[] = [];
  client.subscribe(channels.replyDeep, sid, (r) => void replies.push(r));
  await client.nc.flush();
  client.publish(channels.turn, sid, { turnId, kind: 'end', text: USER, eouProb: 0.9, speechEndMs: 10 });
  await waitFor(() => replies.at(-1)?.done === true, { timeoutMs: 10_000 });
  const spans = await otlp.waitForSpans(
    (all) => all.some((s) => s.name === SPAN.deepGenerate && s.attributes[ATTR.turnId] === turnId),
    5000,
  );
  return spans.filter((s) => s.attributes[ATTR.turnId] === turnId);
}

describe('what the user said and what the model wrote stay out of the trace', () => {
  it('records a failed tool call by its outcome only, and no text on the generation span', async () => {
    delete process.env.VA_TRACE_TEXT;
    const spans = await turn('priv-1', 'p1');
    const tool = spans.find((s) => s.name === SPAN.tool)!;
    expect(tool.attributes[ATTR.toolOutcome]).toBe('bad-arguments');
    expect(tool.statusCode).toBe(2);
    const text = JSON.stringify(spans);
    for (const fragment of ['Higgins', 'doctor', 'knee', 'could not save that reminder']) {
      expect(text).not.toContain(fragment);
    }
    expect(spans.find((s) => s.name === SPAN.deepGenerate)!.attributes[ATTR.text]).toBeUndefined();
  });

  it('keeps them with VA_TRACE_TEXT=1 (for debugging on your own data)', async () => {
    process.env.VA_TRACE_TEXT = '1';
    const spans = await turn('priv-2', 'p2');
    expect(JSON.stringify(spans.find((s) => s.name === SPAN.tool))).toContain('Higgins');
    expect(spans.find((s) => s.name === SPAN.deepGenerate)!.attributes[ATTR.text]).toBe(
      'I could not save that reminder.',
    );
  });
});
