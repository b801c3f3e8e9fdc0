import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runScenario } from '../src/scenario.js';
import { percentile } from '../src/stats.js';

// The bench's numbers must come from what really happened, not from the profile's settings: slow one fake
// provider down by 200 ms and the measured voice-to-voice latency must move by about that much.
describe('bench measurements', () => {
  it('move by ~200 ms when the TTS first byte is 200 ms slower', async () => {
    const outDir = join(tmpdir(), `va-bench-test-${process.pid}`);
    const run = (ttfbMs: number) =>
      runScenario({
        profile: 'fast-cloud',
        variant: 'ours',
        sessions: 2,
        turnsPerSession: 3,
        outDir,
        // Without preemptive generation the TTS is always on the critical path; with it, a slow commit (a busy
        // machine) can hide part of the TTS delay behind the audio held for the commit.
        env: { TTS_FAKE_TTFB_MS: String(ttfbMs), TURN_PREEMPTIVE_GENERATION: '0' },
      });
    const base = await run(75);
    const slow = await run(275);
    expect(base.turns.length).toBeGreaterThanOrEqual(5);
    expect(slow.turns.length).toBeGreaterThanOrEqual(5);
    const delta =
      percentile(
        slow.turns.map((t) => t.e2eMs),
        50,
      ) -
      percentile(
        base.turns.map((t) => t.e2eMs),
        50,
      );
    expect(delta).toBeGreaterThan(120);
    expect(delta).toBeLessThan(280);
  }, 240_000);
});
