import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { concat, readWav, rmsDbfs } from '@va/audio';
import { runConversation } from '@va/e2e';
import { ATTR, METRIC, SPAN } from '@va/telemetry';
import { wordAccuracy } from '@va/testkit';
import { findLeaks, privateFragments } from './privacy.js';

// Sentences the offline recogniser hears well in flite's voice; the answers come from the local rule-based LLM.
const SCRIPT = {
  turns: [
    { say: 'the weather is nice today', pauseMs: 600 },
    { say: 'set an alarm for seven in the morning', pauseMs: 600 },
    { say: 'i would like to go hiking with my two children', pauseMs: 600 },
    // Answered through the deep responder's local-time tool.
    { say: 'what time is it', pauseMs: 600 },
  ],
};

describe('a voice conversation through seven processes', () => {
  it('hears each turn, answers with an opener then the answer (once via a tool), and traces each turn across all seven services', async () => {
    const outDir = join(tmpdir(), `va-e2e-${process.pid}`);
    const { report, summary, spans, spansFile, metrics, stages, exits } = await runConversation({
      script: SCRIPT,
      outDir,
      llmTtftMs: 100,
      llmTokensPerSecond: 80,
    });

    // Seven stages, seven OS processes (none of them this test).
    const pids = stages.map((s) => s.pid);
    expect(stages.map((s) => s.stage).sort()).toEqual([
      'deep-responder',
      'fast-responder',
      'media-gateway',
      'session-context',
      'stt',
      'tts',
      'turn-detector',
    ]);
    expect(new Set(pids).size).toBe(7);
    expect(pids).not.toContain(process.pid);
    // SIGTERM drains every stage cleanly.
    for (const [stage, exit] of Object.entries(exits)) expect(exit, stage).toEqual({ code: 0, signal: null });

    expect(report.turns).toHaveLength(4);
    const agent = readWav(await readFile(summary.agentWav));
    for (const [i, turn] of report.turns.entries()) {
      expect(turn.userText).toBe(SCRIPT.turns[i]!.say);
      expect(
        wordAccuracy(turn.userText, turn.transcript),
        `turn ${i + 1}: "${turn.transcript}"`,
      ).toBeGreaterThanOrEqual(0.8);
      expect(turn.opener.length, `turn ${i + 1} opener`).toBeGreaterThan(0);
      expect(turn.answer.length, `turn ${i + 1} answer`).toBeGreaterThan(0);
      expect(turn.interrupted).toBe(false);

      // Opener first, then the answer, in the recording, never overlapping; and both are really audible there.
      const segs = summary.segments.filter((s) => s.turnId === turn.turnId);
      const fast = segs.filter((s) => s.source === 'fast');
      const deep = segs.filter((s) => s.source === 'deep');
      expect(fast.length).toBeGreaterThan(0);
      expect(deep.length).toBeGreaterThan(0);
      expect(fast[fast.length - 1]!.endMs).toBeLessThanOrEqual(deep[0]!.startMs);
      // Per source, over all its stretches: a lone stretch can be a single trailing frame of silence (the end of
      // a sentence that arrived after the frame clock ran dry on a loaded machine).
      for (const [source, stretches] of [
        ['opener', fast],
        ['answer', deep],
      ] as const) {
        const audio = concat(
          stretches.map((s) => ({
            samples: agent.samples.subarray((s.startMs * agent.sampleRate) / 1000, (s.endMs * agent.sampleRate) / 1000),
            sampleRate: agent.sampleRate,
          })),
        );
        expect(rmsDbfs(audio.samples), `turn ${i + 1} ${source} audible`).toBeGreaterThan(-50);
      }

      // One trace per turn, holding spans from all seven services; the root carries the voice-to-voice latency.
      const mine = spans.filter((s) => s.traceId === turn.traceId);
      const services = [...new Set(mine.map((s) => s.serviceName))].sort();
      expect(services, `services in trace of turn ${i + 1}: ${mine.map((s) => s.name).join(', ')}`).toHaveLength(7);
      const roots = mine.filter((s) => s.parentSpanId === undefined);
      expect(roots.map((r) => r.name)).toEqual([SPAN.turn]);
      expect(typeof roots[0]!.attributes[ATTR.e2eMs]).toBe('number');
      expect(roots[0]!.attributes[ATTR.e2eMs]).toBe(turn.e2eMs);
      for (const name of [
        SPAN.sttTranscribe,
        SPAN.turnDetect,
        SPAN.fastGenerate,
        SPAN.deepGenerate,
        SPAN.ttsSynthesize,
        SPAN.gatewayPlayout,
        // session-context recording the turn: responders read history from their replica, nothing is fetched.
        SPAN.contextUpdate,
      ]) {
        expect(
          mine.some((s) => s.name === name),
          `${name} in turn ${i + 1}`,
        ).toBe(true);
      }
      expect(mine.every((s) => s.attributes[ATTR.sessionId] === report.sessionId)).toBe(true);
    }
    // No segment of one turn overlaps another's.
    const sorted = [...summary.segments].sort((a, b) => a.startMs - b.startMs);
    for (let i = 1; i < sorted.length; i++) expect(sorted[i]!.startMs).toBeGreaterThanOrEqual(sorted[i - 1]!.endMs);
    // Every turn's trace is distinct.
    expect(new Set(report.turns.map((t) => t.traceId)).size).toBe(4);
    // The last question was answered with the tool's result: one `tool` span in its trace, the time in the answer.
    const timeTurn = report.turns[3]!;
    expect(timeTurn.tools).toEqual([{ name: 'get_local_time', outcome: 'ok', durationMs: expect.any(Number) }]);
    expect(timeTurn.answer).toMatch(/\d{1,2}:\d{2} [AP]M/);
    for (const t of report.turns.slice(0, 3)) expect(t.tools).toEqual([]);

    // The metrics every stage exported over OTLP (cumulative: a stage's last export holds its totals).
    const total = (name: string, service: string): number => {
      const last = metrics.filter((m) => m.name === name && m.serviceName === service).at(-1);
      const points = (last?.dataPoints ?? []) as {
        count?: string | number;
        asInt?: string | number;
        asDouble?: number;
      }[];
      return points.reduce((n, p) => n + Number(p.count ?? p.asInt ?? p.asDouble ?? 0), 0);
    };
    expect(total(METRIC.turns, 'media-gateway')).toBe(4);
    expect(total(METRIC.e2e, 'media-gateway')).toBe(4);
    expect(total(METRIC.eouDelay, 'turn-detector')).toBeGreaterThanOrEqual(4);
    expect(total(METRIC.ttft, 'fast-responder')).toBeGreaterThanOrEqual(4);
    expect(total(METRIC.ttft, 'deep-responder')).toBeGreaterThanOrEqual(4);
    expect(total(METRIC.ttfb, 'tts')).toBeGreaterThanOrEqual(4);
    expect(total(METRIC.messagesRejected, 'stt')).toBe(0);
    for (const stage of ['stt', 'turn-detector', 'fast-responder', 'deep-responder', 'tts', 'session-context']) {
      expect(total(METRIC.sessionsClaimed, stage), stage).toBe(1);
    }
    // pocketsphinx's decoder pool reports itself: for one session, its decoder and the spare (loaded), ≤ 1 in use.
    const decoders = total(METRIC.sttDecoders, 'stt');
    expect(decoders).toBeGreaterThanOrEqual(2);
    expect(decoders).toBeLessThanOrEqual(3);

    // Privacy: what the user and the agent said is in no stage's log and no span (VA_TRACE_TEXT is not set).
    if (process.env.VA_TRACE_TEXT !== '1') {
      const fragments = privateFragments(
        report.turns.flatMap((t) => [t.userText, t.transcript]),
        report.turns.flatMap((t) => [t.opener, t.answer]),
      );
      expect(fragments.length).toBeGreaterThan(10);
      expect(findLeaks({ fragments, stages, spans })).toEqual([]);
    }

    // npm run trace prints the last turn's waterfall from the spans file the conversation wrote.
    const { stdout } = await promisify(execFile)(process.execPath, [
      fileURLToPath(new URL('../../scripts/trace.mjs', import.meta.url)),
      '--file',
      spansFile,
      '--last',
      '1',
    ]);
    expect(stdout).toContain(`trace ${timeTurn.traceId} · `);
    for (const name of [
      SPAN.turn,
      SPAN.sttTranscribe,
      SPAN.turnDetect,
      SPAN.fastGenerate,
      SPAN.deepGenerate,
      SPAN.ttsSynthesize,
      SPAN.gatewayPlayout,
    ]) {
      expect(stdout, stdout).toMatch(new RegExp(`^ +${name.replace('.', '\\.')} +[a-z-]+ +\\|[ █]+\\| `, 'm'));
    }
  }, 180_000);
});
