import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runEot } from '../src/eot/eot.js';
import { eotMarkdown, eotSvg } from '../src/eot/report.js';

// The eot bench end to end on a corpus of three: real stt (the timed fake, scripted with the corpus's words) and a
// real turn-detector on a real nats-server, the speech synthesized by flite. Every figure the issue asks for comes
// out, from what really happened: a 900 ms pause after "for" is a hold the model listens through.
describe('npm run bench -- --eot', () => {
  it('streams the takes through stt and turn-detector and reads eot-bench’s figures per detector', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'va-eot-'));
    const corpus = join(dir, 'corpus.json');
    writeFileSync(
      corpus,
      JSON.stringify({
        utterances: [
          { text: 'i would like a table for | two people', pauses: [900], split: 'eval' },
          { text: 'what time is it', split: 'eval' },
          { text: 'send it to | my sister | please', pauses: [700, 1100], split: 'eval' },
        ],
      }),
    );
    const streamed: number[] = [];
    const result = await runEot({
      corpus,
      voices: 'flite:slt',
      seed: 1,
      recognisers: ['exact'],
      onStreamed: (_, takes) => void streamed.push(takes.length),
    });
    expect(streamed).toEqual([3]);
    expect(result.takes).toBe(3);
    expect(result.holds).toBe(3);
    const rows = result.rows;
    for (const detector of ['vad-only', 'heuristic', 'ngram-words', 'ngram-prosody']) {
      for (const budget of [300, 600]) {
        const row = rows.find(
          (r) => r.detector === detector && r.name === 'eot_false_cutoff_pct' && r.budget_ms === budget,
        );
        expect(row, `${detector} @${budget}`).toBeDefined();
      }
      for (const cutoff of [5, 10]) {
        const row = rows.find((r) => r.detector === detector && r.name === 'eot_latency_ms' && r.cutoff_pct === cutoff);
        expect(row, `${detector} @${cutoff}%`).toBeDefined();
      }
    }
    // Silence alone cannot wait through a 700 ms pause and still answer within 300 ms.
    const vad300 = rows.find(
      (r) => r.detector === 'vad-only' && r.name === 'eot_false_cutoff_pct' && r.budget_ms === 300,
    );
    expect(vad300!.value).toBe(100);
    // The live turn detector ended every take's turn once the user was done, and waited through the pause after "for".
    const missed = rows.find((r) => r.name === 'eot_live_missed_turns');
    expect(missed!.value).toBe(0);
    const liveLatency = rows.find((r) => r.name === 'eot_live_latency_ms' && r.stat === 'mean');
    expect(liveLatency!.value).toBeGreaterThan(0);
    expect(liveLatency!.value).toBeLessThan(2500);
    expect(Object.keys(result.curves.exact!)).toContain('ngram-prosody');
    expect(eotMarkdown(result)).toContain('| ngram-prosody |');
    expect(eotSvg(result)).toMatch(/^<svg[\s\S]*<path d="M[\s\S]*<\/svg>$/);
  });
});
