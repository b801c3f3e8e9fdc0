import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runConversation, type Pipeline, type RunningStage } from '@va/e2e';

// The custom deep responder of docs/custom-stage.md, as built in CI.
const FAQ_RESPONDER = fileURLToPath(new URL('../../examples/stages/faq-responder/dist/main.js', import.meta.url));
const SAID = [
  'what are your opening hours',
  'where can i find you',
  'what are your opening hours please',
  'can i book a table',
  'where is your address',
];
const FAQ_ANSWERS = [
  'We are open every evening from six to eleven.',
  'We are at 12 Quai des Fleurs, by the river.',
  'Happy to book a table. For how many people?',
];

describe('swapping one stage’s implementation live', () => {
  it('rolls the custom FAQ responder in for the deep responder mid-conversation: no turn lost, later answers its own', async () => {
    let swap: Promise<void> | undefined;
    const swapped: string[] = [];
    const { summary, report } = await runConversation({
      script: { turns: SAID.map((say) => ({ say, pauseMs: 600 })) },
      outDir: join(tmpdir(), `va-swap-${process.pid}`),
      env: {
        VAD_PROVIDER: 'energy',
        STT_PROVIDER: 'timed',
        TIMED_STT_TEXTS: JSON.stringify(SAID),
        TIMED_STT_FINAL_MS: '100',
        TIMED_STT_MIN_SPEECH_MS: '400',
      },
      llmTtftMs: 100,
      llmTokensPerSecond: 40,
      // A rolling update of the deep responder while the conversation goes on, as on Kubernetes: the new
      // implementation is started, then each old instance gets SIGTERM and hands its sessions over.
      onRunning: (stages: readonly RunningStage[], pipeline: Pipeline) => {
        swap = (async () => {
          await new Promise((r) => setTimeout(r, 6_000)); // a turn or two into the conversation
          const custom = pipeline.spawnStage('deep-responder', FAQ_RESPONDER);
          await custom.child.waitForJson((l: { msg?: string }) => l.msg === 'actor host started', 60_000);
          for (const old of stages.filter((s) => s.stage === 'deep-responder')) {
            const exit = await old.child.stop(20_000);
            swapped.push(`deep-responder pid ${old.pid} exit ${exit.code}`);
          }
        })();
      },
    });
    await swap;
    expect(swapped).toEqual([expect.stringMatching(/exit 0$/)]);
    // Every turn answered, once.
    expect(summary.turns.map((t) => t.userText)).toEqual(SAID);
    for (const t of report.turns) expect(t.answer.length, t.transcript).toBeGreaterThan(0);
    // The first answer came from the model, the last ones from the FAQ responder.
    expect(FAQ_ANSWERS).not.toContain(report.turns[0]!.answer);
    expect(report.turns.slice(-2).map((t) => t.answer)).toEqual([FAQ_ANSWERS[2], FAQ_ANSWERS[1]]);
  }, 240_000);
});
