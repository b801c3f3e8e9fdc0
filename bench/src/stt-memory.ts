import { join } from 'node:path';
import { runConversation, type RunningStage } from '@va/e2e';
import { BENCH_SENTENCES, PROFILES } from './profiles.js';
import { residentMb, watchProcesses } from './resources.js';

/** stt's memory before any session, at its peak, and once every session has closed and its decoders are freed. */
export interface SttMemory {
  sessions: number;
  idleMb: number;
  peakMb: number;
  afterCloseMb: number;
}

/** An idle decoder above what open sessions need is freed after 10 s (IDLE_FREE_MS in @va/providers); then some. */
const AFTER_CLOSE_WAIT_MS = 13_000;

/**
 * Offline profile (real pocketsphinx decoders), `sessions` sessions speaking together: does stt go back to its idle
 * memory when they close? (Issue 18: it stayed at ≈ 800 MB after all sessions closed, ≈ 250 MB at start.)
 */
export async function measureSttMemory(sessions: number, outDir: string): Promise<SttMemory> {
  const profile = PROFILES.offline;
  const stt = (stages: readonly RunningStage[]) => stages.find((s) => s.stage === 'stt')!;
  let idleMb = 0;
  let peakMb = 0;
  let afterCloseMb = 0;
  let watcher: ReturnType<typeof watchProcesses> | undefined;
  const run = runConversation({
    script: { turns: [{ say: BENCH_SENTENCES[0]!, pauseMs: 400 }] },
    outDir: join(outDir, `stt-memory-${sessions}`),
    sessionId: `stt-mem-${sessions}`,
    sessions,
    recordAudio: false,
    fastLlm: profile.fastLlm,
    deepLlm: profile.deepLlm,
    env: { VA_SESSION_CAPACITY: '1000', GATEWAY_STAGGER_MS: '50', ...profile.env },
    beforeSessions: async (stages) => {
      const pid = stt(stages).pid;
      idleMb = await residentMb(pid);
      watcher = watchProcesses([{ name: 'stt', pid }], 200);
    },
    afterSessions: async (stages) => {
      peakMb = Math.round((await watcher!.stop())[0]!.maxRssMb);
      await new Promise((r) => setTimeout(r, AFTER_CLOSE_WAIT_MS));
      afterCloseMb = await residentMb(stt(stages).pid);
    },
  });
  // A failed run must not leave the sampling timer behind.
  await run.finally(() => watcher?.stop());
  return { sessions, idleMb, peakMb, afterCloseMb };
}
