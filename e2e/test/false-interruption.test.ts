import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readWav } from '@va/audio';
import { runConversation } from '@va/e2e';
import { EVENT, SPAN } from '@va/telemetry';

// Seven processes; the recogniser is the timed fake (a cloud recogniser's timing, no words in a 300 ms sound),
// the VAD the energy one (a cough is loud), the agent's voice the real local TTS.
const ENV = {
  VAD_PROVIDER: 'energy',
  STT_PROVIDER: 'timed',
  TIMED_STT_TEXTS: JSON.stringify(['tell me a long story', 'thank you']),
  TIMED_STT_FINAL_MS: '100',
  TIMED_STT_MIN_SPEECH_MS: '400',
};
const SCRIPT = {
  turns: [
    { say: 'tell me a long story', pauseMs: 600 },
    // A 300 ms cough 1.5 s into the agent's answer.
    { noiseMs: 300, interruptAfterMs: 1500, pauseMs: 800 },
    { say: 'thank you', pauseMs: 600 },
  ],
};

describe('a cough during the answer', () => {
  it('pauses the agent, then resumes where it stopped: the recording holds every frame once, in order', async () => {
    const outDir = join(tmpdir(), `va-cough-${process.pid}`);
    const { report, summary, spans, sentAudio } = await runConversation({
      script: SCRIPT,
      outDir,
      env: ENV,
      llmTtftMs: 100,
      llmTokensPerSecond: 40,
    });
    expect(report.turns.map((t) => t.transcript)).toEqual(['tell me a long story', 'thank you']);
    const story = report.turns[0]!;
    expect(story.interrupted).toBe(false);
    expect(story.resumes).toBe(1);
    const root = spans.find((s) => s.traceId === story.traceId && s.name === SPAN.turn)!;
    // The turn's story is one barge-in, then one resume (a slow machine may add budget_exceeded notes beside it).
    const turnEvents = root.events.map((e) => e.name).filter((n) => n !== EVENT.budgetExceeded);
    expect(turnEvents).toEqual([EVENT.bargeIn, EVENT.resume]);

    // The agent went quiet while the user coughed, and played on afterwards.
    const cough = summary.utterances[1]!;
    const segs = summary.segments.filter((s) => s.turnId === story.turnId);
    // (Other pauses may exist: an answer later than its opener, a filler.)
    expect(
      segs.some((s) => s.startMs < cough.startMs),
      'agent audio before the cough',
    ).toBe(true);
    expect(
      segs.filter((s) => s.endMs > cough.startMs + 150 && s.startMs < cough.endMs),
      'agent audio during the cough (beyond the first 150 ms)',
    ).toEqual([]);
    expect(
      segs.some((s) => s.startMs >= cough.endMs),
      'agent audio after the cough',
    ).toBe(true);

    // No repeated (and no lost) audio: tick by tick, the turn's audio in the output WAV is exactly the frames
    // tts sent, each once, in the order sent.
    const agent = readWav(await readFile(summary.agentWav));
    const at = (ms: number) => Math.round((ms * agent.sampleRate) / 1000);
    const ticks = segs.flatMap((s) => Array.from({ length: (s.endMs - s.startMs) / 20 }, (_, k) => s.startMs + k * 20));
    const sent = sentAudio.get(story.turnId) ?? [];
    expect(sent.length).toBeGreaterThan(50); // over a second of answer
    expect(ticks).toHaveLength(sent.length);
    let mismatched = 0;
    for (const [k, frame] of sent.entries()) {
      const recorded = agent.samples.subarray(at(ticks[k]!), at(ticks[k]!) + frame.length);
      if (recorded.some((v, i) => Math.abs(v - frame[i]!) > 1)) mismatched++;
    }
    expect(mismatched).toBe(0);
  }, 240_000);
});
