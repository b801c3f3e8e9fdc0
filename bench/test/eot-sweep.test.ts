import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseSpeakerVoices } from '@va/testkit';
import { loadCorpus, PAUSE_RANGE_MS, splitOf, takes } from '../src/eot/corpus.js';
import {
  cutoffAtLatency,
  evaluate,
  fireAt,
  latencyAtCutoff,
  paretoFrontier,
  previewCost,
  sweep,
  type Silence,
} from '../src/eot/sweep.js';

const hold = (durationMs: number, steps: Silence['steps']): Silence => ({ label: 'hold', durationMs, steps });
const end = (steps: Silence['steps']): Silence => ({ label: 'eot', durationMs: Infinity, steps });
const step = (fromMs: number, p: number, settled = true) => ({ fromMs, p, settled });

describe('the eot-bench policy sweep', () => {
  it('fires at the first moment past the action delay that the probability reaches the threshold, else at the timeout', () => {
    const steps = [step(0, 0.2), step(250, 0.9), step(600, 0.3)];
    expect(fireAt(steps, { threshold: 0.5, actionDelayMs: 100, timeoutMs: 2000 })).toBe(250);
    expect(fireAt(steps, { threshold: 0.5, actionDelayMs: 400, timeoutMs: 2000 })).toBe(400);
    // The confident stretch is over before the action delay: nothing until the timeout.
    expect(fireAt(steps, { threshold: 0.5, actionDelayMs: 700, timeoutMs: 1500 })).toBe(1500);
    expect(fireAt(steps, { threshold: 0.95, actionDelayMs: 0, timeoutMs: 1000 })).toBe(1000);
  });

  it('counts a hold as cut off when the policy fires inside it, and averages the wait at the real ends', () => {
    const silences = [
      hold(500, [step(0, 0.9)]), // fires at 100 < 500: a cut-off
      hold(500, [step(0, 0.1)]), // never reaches the threshold, timeout 1000 is past its end
      end([step(0, 0.1), step(300, 0.8)]), // fires at 300
      end([step(0, 0.1)]), // waits for the timeout
    ];
    const point = evaluate(silences, { threshold: 0.5, actionDelayMs: 100, timeoutMs: 1000 });
    expect(point.cutoffPct).toBe(50);
    expect(point.latencyMs).toBe((300 + 1000) / 2);
  });

  it('reads the operating points off the sweep: a detector that knows beats silence alone', () => {
    // Holds 300–1500 ms; a detector that is sure at the real ends and unsure in the holds.
    const holds = [300, 500, 700, 900, 1100, 1300, 1500].map((ms) => hold(ms, [step(0, 0.1)]));
    const ends = Array.from({ length: 7 }, () => end([step(0, 0.9)]));
    const knowing = sweep([...holds, ...ends]);
    const vadOnly = sweep(
      [...holds, ...ends].map((s) => ({ ...s, steps: [step(0, 1)] })),
      true,
    );
    expect(cutoffAtLatency(knowing, 300)!.cutoffPct).toBe(0);
    // Waiting 300 ms lets only the 300 ms hold through.
    expect(cutoffAtLatency(vadOnly, 300)!.cutoffPct).toBeCloseTo((100 * 6) / 7);
    expect(latencyAtCutoff(knowing, 5)!.latencyMs).toBe(0);
    expect(latencyAtCutoff(vadOnly, 5)!.latencyMs).toBe(1500);
    expect(cutoffAtLatency(vadOnly, -1)).toBeUndefined(); // no policy within that budget: eot-bench's "–"
    const frontier = paretoFrontier(vadOnly);
    for (let i = 1; i < frontier.length; i++) {
      expect(frontier[i]!.latencyMs).toBeGreaterThan(frontier[i - 1]!.latencyMs);
      expect(frontier[i]!.cutoffPct).toBeLessThan(frontier[i - 1]!.cutoffPct);
    }
  });

  it('prices eager generation: previews per real turn, and the share a pause wasted', () => {
    const silences = [hold(500, [step(0, 0.9)]), hold(500, [step(0, 0.9, false)]), end([step(0, 0.9)])];
    expect(previewCost(silences, 0.5, 1)).toEqual({ perTurn: 2, cancelledPct: 50 });
  });
});

describe('the eot corpus', () => {
  it('ships ≥ 300 utterances with pauses and short complete turns, split about half and half', () => {
    const corpus = loadCorpus();
    expect(corpus.utterances.length).toBeGreaterThanOrEqual(300);
    const pauses = corpus.utterances.reduce((n, u) => n + u.text.split('|').length - 1, 0);
    expect(pauses).toBeGreaterThan(300);
    expect(corpus.utterances.filter((u) => !u.text.includes('|')).length).toBeGreaterThan(30);
    const train = corpus.utterances.filter((u) => splitOf(u) === 'train').length;
    expect(train / corpus.utterances.length).toBeGreaterThan(0.4);
    expect(train / corpus.utterances.length).toBeLessThan(0.6);
  });

  it('draws the pauses a take lacks from the seed, and keeps the ones it gives', () => {
    const dir = mkdtempSync(join(tmpdir(), 'va-eot-corpus-'));
    const file = join(dir, 'corpus.json');
    const text = 'i would like a table for two on | friday evening | please';
    writeFileSync(
      file,
      JSON.stringify({
        utterances: [
          { text, split: 'eval' },
          { text: 'yes', pauses: [] },
        ],
      }),
    );
    const voices = parseSpeakerVoices('flite:slt,flite:kal');
    const a = takes(loadCorpus(file), voices, 'eval', 7);
    expect(a).toHaveLength(2);
    expect(takes(loadCorpus(file), voices, 'eval', 7)).toEqual(a);
    for (const t of a) {
      expect(t.pausesMs).toHaveLength(2);
      for (const ms of t.pausesMs) expect(ms).toBeGreaterThanOrEqual(PAUSE_RANGE_MS[0]);
      for (const ms of t.pausesMs) expect(ms).toBeLessThanOrEqual(PAUSE_RANGE_MS[1]);
    }
    expect(takes(loadCorpus(file), voices, 'eval', 8)[0]!.pausesMs).not.toEqual(a[0]!.pausesMs);
    writeFileSync(file, JSON.stringify({ utterances: [{ text: 'a | b', pauses: [700], split: 'eval' }] }));
    expect(takes(loadCorpus(file), voices, 'eval', 1)[0]!.pausesMs).toEqual([700]);
  });

  it('refuses a corpus with the schema’s message', () => {
    const dir = mkdtempSync(join(tmpdir(), 'va-eot-corpus-'));
    const file = join(dir, 'bad.json');
    writeFileSync(file, JSON.stringify({ utterances: [{ text: 'a | b', pauses: [700, 800] }] }));
    expect(() => loadCorpus(file)).toThrow(/one entry per `\|`/);
    writeFileSync(file, JSON.stringify({ utterances: [{ text: '| b' }] }));
    expect(() => loadCorpus(file)).toThrow(/must stand between words/);
    writeFileSync(file, '{ not json');
    expect(() => loadCorpus(file)).toThrow(/bad\.json/);
  });
});
