import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readWav, rmsDbfs, type Pcm } from '@va/audio';
import { runConversation } from '@va/e2e';
import { ATTR, EVENT, SPAN } from '@va/telemetry';

// The offline providers (pocketsphinx, Silero, flite) through seven processes, the user played by a script that
// talks over the agent and pauses mid-sentence. Timings are read from the recording, as a listener would.
const SCRIPT = {
  turns: [
    { say: 'the weather is nice today', pauseMs: 600 },
    // Over the agent's answer to the first turn, 2.5 s into its audio. (A voiced first sound: no VAD hears an
    // unvoiced "s" as speech, so "set…" would be heard ~100 ms after its first audible frame.)
    { say: 'wait set an alarm for seven in the morning', interruptAfterMs: 2500, pauseMs: 600 },
    // A sentence left hanging on "with", 700 ms of quiet, then its end: one turn.
    { say: 'i would like to go hiking with', waitForAgent: false, pauseMs: 700 },
    { say: 'my two children', pauseMs: 600 },
    // Two complete questions with the same 700 ms between them: two turns.
    { say: 'what time is it', waitForAgent: false, pauseMs: 700 },
    { say: 'where is the station', pauseMs: 600 },
  ],
};

const FRAME_MS = 20;

describe('turn-taking with the offline providers', () => {
  it('stops within 150 ms of a barge-in and stores only what was heard; joins a hanging "with" to its end, keeps two questions apart', async () => {
    const outDir = join(tmpdir(), `va-turns-${process.pid}`);
    const { report, summary, spans, history } = await runConversation({
      script: SCRIPT,
      outDir,
      llmTtftMs: 100,
      llmTokensPerSecond: 40,
    });
    const said = report.turns.map((t) => t.transcript);
    const userTexts = report.turns.map((t) => t.userText);
    for (const i of [0, 1, 4, 5]) expect(userTexts).toContain(SCRIPT.turns[i]!.say);
    // The hanging "with": the turn detector waits through the pause (one turn), or — when flite's falling "…with."
    // sounds final to the model — ends the turn there and carries its words over when the user goes on (the
    // continuation). Either way the words answered hold both parts, and "my two children" is never a turn alone.
    const children = report.turns.filter((t) => /children/.test(t.transcript));
    expect(children, JSON.stringify(said)).toHaveLength(1);
    expect(children[0]!.transcript, 'one turn holds both parts').toMatch(/with.*children/);
    for (const t of report.turns)
      if (t.turnId !== children[0]!.turnId && /with/.test(t.transcript)) {
        expect(t.interrupted, 'the turn sent on the hanging "with" was taken back').toBe(true);
      }

    // Barge-in: the agent's audio stops within 150 ms of the user starting to speak, both read from the recording:
    // the user's start is their first clearly audible frame (flite leads each utterance with near-silence).
    const first = report.turns[0]!;
    expect(first.interrupted).toBe(true);
    const [agent, user] = [readWav(await readFile(summary.agentWav)), readWav(await readFile(summary.mixWav))];
    const level = (track: Pcm, atMs: number) => {
      const at = (atMs * track.sampleRate) / 1000;
      return rmsDbfs(track.samples.subarray(at, at + (FRAME_MS * track.sampleRate) / 1000));
    };
    const utterance = summary.utterances[1]!;
    let userStart = utterance.startMs;
    while (level(user, userStart) < -40 && userStart < utterance.endMs) userStart += FRAME_MS;
    expect(level(agent, userStart - FRAME_MS), 'the agent was speaking when the user began').toBeGreaterThan(-50);
    let agentEnd = userStart;
    for (let t = userStart; t < utterance.endMs; t += FRAME_MS) if (level(agent, t) > -50) agentEnd = t + FRAME_MS;
    expect(agentEnd - userStart, 'agent audio after the user began (ms)').toBeLessThanOrEqual(150);
    expect(first.bargeInStopMs).not.toBeNull();
    expect(first.bargeInStopMs!).toBeLessThanOrEqual(150);
    // Nothing of the cancelled turn was played afterwards.
    const segs = summary.segments.filter((s) => s.turnId === first.turnId);
    expect(Math.max(...segs.map((s) => s.endMs))).toBeLessThanOrEqual(agentEnd);

    // What the user heard is a strict prefix of opener + answer, and exactly that is the stored assistant message.
    expect(first.playedText.length).toBeGreaterThan(0);
    const full = `${first.opener} ${first.answer}`;
    expect(full.startsWith(first.playedText.split(' ').slice(0, 2).join(' '))).toBe(true);
    expect(first.playedText.length).toBeLessThan(full.length);
    const firstUser = history.findIndex((m) => m.role === 'user' && m.content === first.transcript);
    expect(firstUser, JSON.stringify(history)).toBeGreaterThanOrEqual(0);
    expect(history[firstUser + 1]).toEqual({ role: 'assistant', content: first.playedText });

    // The root span tells the story: a barge-in event and the measured stop.
    const root = spans.find((s) => s.traceId === first.traceId && s.name === SPAN.turn)!;
    expect(root.events.map((e) => e.name)).toContain(EVENT.bargeIn);
    expect(root.attributes[ATTR.bargeInStopMs]).toBeLessThanOrEqual(150); // from where the VAD heard the user begin
    for (const t of report.turns) expect(t.eouDelayMs, `eouDelayMs of "${t.transcript}"`).not.toBeNull();
  }, 240_000);
});
