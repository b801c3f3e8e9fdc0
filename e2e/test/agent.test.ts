import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import { runConversation } from '@va/e2e';
import { ATTR, SPAN } from '@va/telemetry';

// Seven processes; the recogniser is the timed fake (words known in advance), the VAD the energy one, the
// agent's voice the real local TTS.
const ENV = {
  VAD_PROVIDER: 'energy',
  STT_PROVIDER: 'timed',
  TIMED_STT_TEXTS: JSON.stringify(['a table for two please', 'what time is it']),
  TIMED_STT_FINAL_MS: '100',
  TIMED_STT_MIN_SPEECH_MS: '400',
};
const CLOCK_SERVICE = fileURLToPath(new URL('../../examples/tools/clock/dist/main.js', import.meta.url));
const GREETING =
  'Good evening, and thank you for calling Chez Nous, the little French restaurant by the river. How can I help you tonight?';

describe('an agent profile with a greeting', () => {
  it('speaks first; the user talks over the greeting; only what was heard of it is in the history; its tool service answers', async () => {
    const { summary, spans } = await runConversation({
      script: {
        turns: [
          { say: 'a table for two please', interruptAfterMs: 1500, pauseMs: 600 },
          { say: 'what time is it', pauseMs: 600 },
        ],
      },
      toolServices: [CLOCK_SERVICE],
      outDir: join(tmpdir(), `va-agent-${process.pid}`),
      env: ENV,
      llmTtftMs: 100,
      llmTokensPerSecond: 40,
      agent: {
        name: 'concierge',
        instructions: 'You book tables at Chez Nous.',
        greeting: GREETING,
        tools: ['world_clock'],
      },
    });
    const [greeting, answer, time] = summary.turns;
    // The first agent turn is the greeting, with no user turn before it, interrupted by the user.
    expect(greeting).toMatchObject({ userText: '', interrupted: true, e2eMs: null });
    expect(greeting!.spokenText.length).toBeGreaterThan(0);
    expect(GREETING.startsWith(greeting!.spokenText)).toBe(true);
    expect(greeting!.spokenText.length).toBeLessThan(GREETING.length);
    expect(summary.utterances[0]!.startMs).toBeGreaterThan(greeting!.firstAudioMs!);
    // The user's turn is answered as usual.
    expect(answer).toMatchObject({ userText: 'a table for two please', interrupted: false });
    expect(answer!.spokenText.length).toBeGreaterThan(0);
    // The history holds what the user heard of the greeting, then their turn and the answer.
    expect(summary.history.map((m) => m.role).slice(0, 3)).toEqual(['assistant', 'user', 'assistant']);
    expect(summary.history[0]!.content).toBe(greeting!.spokenText);
    // Its trace: a turn of its own, marked as the greeting, with the stages' spans under it.
    const root = spans.find((s) => s.traceId === greeting!.traceId && s.name === SPAN.turn)!;
    expect(root.attributes[ATTR.greeting]).toBe(true);
    expect(spans.some((s) => s.traceId === greeting!.traceId && s.name === SPAN.ttsSynthesize)).toBe(true);
    // The profile's tool is a service in its own process: called in the turn that needs it, its span in that trace.
    expect(time!.userText).toBe('what time is it');
    const call = spans.find((s) => s.traceId === time!.traceId && s.name === SPAN.tool)!;
    expect(call.attributes).toMatchObject({ [ATTR.toolName]: 'world_clock', [ATTR.toolOutcome]: 'ok' });
    const run = spans.find((s) => s.traceId === time!.traceId && s.name === SPAN.toolRun)!;
    expect(run.parentSpanId).toBe(call.spanId);
  }, 180_000);
});
