import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runConversation } from '@va/e2e';
import { ATTR, SPAN } from '@va/telemetry';

// Seven processes; the recogniser is the timed fake (words known in advance), the VAD the energy one, the
// agent's voice the real local TTS.
const ENV = {
  VAD_PROVIDER: 'energy',
  STT_PROVIDER: 'timed',
  TIMED_STT_TEXTS: JSON.stringify(['a table for two please']),
  TIMED_STT_FINAL_MS: '100',
  TIMED_STT_MIN_SPEECH_MS: '400',
};
const GREETING =
  'Good evening, and thank you for calling Chez Nous, the little French restaurant by the river. How can I help you tonight?';

describe('an agent profile with a greeting', () => {
  it('speaks first; the user talks over the greeting; only what was heard of it is in the history', async () => {
    const { summary, spans } = await runConversation({
      script: { turns: [{ say: 'a table for two please', interruptAfterMs: 1500, pauseMs: 600 }] },
      outDir: join(tmpdir(), `va-agent-${process.pid}`),
      env: ENV,
      llmTtftMs: 100,
      llmTokensPerSecond: 40,
      agent: { name: 'concierge', instructions: 'You book tables at Chez Nous.', greeting: GREETING },
    });
    const [greeting, answer] = summary.turns;
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
    expect(summary.history.map((m) => m.role)).toEqual(['assistant', 'user', 'assistant']);
    expect(summary.history[0]!.content).toBe(greeting!.spokenText);
    // Its trace: a turn of its own, marked as the greeting, with the stages' spans under it.
    const root = spans.find((s) => s.traceId === greeting!.traceId && s.name === SPAN.turn)!;
    expect(root.attributes[ATTR.greeting]).toBe(true);
    expect(spans.some((s) => s.traceId === greeting!.traceId && s.name === SPAN.ttsSynthesize)).toBe(true);
  }, 180_000);
});
