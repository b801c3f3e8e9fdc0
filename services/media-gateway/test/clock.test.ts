import { describe, expect, it } from 'vitest';
import { runClock } from '@va/audio';

describe('runClock (one timer for every session)', () => {
  it('steps sessions started at different moments together, none before its time, and stops each on its own', async () => {
    const times: number[][] = [[], [], []];
    const stop = [new AbortController(), new AbortController(), new AbortController()];
    const runs: Promise<number>[] = [];
    for (let s = 0; s < 3; s++) {
      runs.push(runClock(20, () => (times[s]!.push(performance.now()), true), stop[s]!.signal));
      await new Promise((r) => setTimeout(r, 7));
    }
    // One that ends itself after its fourth step (steps 0..3 return true, step 4 false).
    const own: number[] = [];
    const ended = await runClock(20, (i) => (own.push(performance.now()), i < 4), new AbortController().signal);
    expect(ended).toBe(4);
    expect(own).toHaveLength(5);
    await new Promise((r) => setTimeout(r, 150));
    stop.forEach((c) => c.abort());
    const counts = await Promise.all(runs);
    for (let s = 0; s < 3; s++) {
      const t = times[s]!;
      expect(counts[s]).toBe(t.length);
      expect(t.length).toBeGreaterThan(8);
      // Never early: step k comes no sooner than k × 20 ms after step 0.
      t.forEach((at, k) => expect(at - t[0]!).toBeGreaterThanOrEqual(k * 20 - 0.5));
    }
    // After their first step, the sessions share the timer: their later steps fall in the same firings.
    const later = (s: number) => times[s]!.slice(1).map((at) => Math.round(at));
    const shared = later(0).filter((at) => later(2).some((b) => Math.abs(b - at) <= 1));
    expect(shared.length).toBeGreaterThanOrEqual(later(2).length - 1);
  });
});

describe('runClock when a session fails', () => {
  it('rejects that session’s clock and keeps the others ticking', async () => {
    const stop = new AbortController();
    let ticks = 0;
    const healthy = runClock(20, () => (ticks++, true), stop.signal);
    const failing = runClock(
      20,
      (i) => {
        if (i === 2) throw new Error('session bug');
        return true;
      },
      new AbortController().signal,
    );
    await expect(failing).rejects.toThrow('session bug');
    const at = ticks;
    await new Promise((r) => setTimeout(r, 120));
    expect(ticks).toBeGreaterThan(at + 3);
    stop.abort();
    await healthy;
  });
});
