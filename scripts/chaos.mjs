#!/usr/bin/env node
// npm run chaos: faults during a scripted conversation through two instances of every stage.
// Usage: npm run chaos -- [--scenario kill|nats-restart|rolling|all] [--turns N] [--json FILE]
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { runChaos } from '@va/harness';

const { values } = parseArgs({
  options: {
    scenario: { type: 'string', default: 'all' },
    turns: { type: 'string', default: '20' },
    json: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  console.log('usage: npm run chaos -- [--scenario kill|nats-restart|rolling|all] [--turns N] [--json FILE]');
  process.exit(0);
}
const scenarios = values.scenario === 'all' ? ['kill', 'nats-restart', 'rolling'] : [values.scenario];
if (!scenarios.every((s) => ['kill', 'nats-restart', 'rolling'].includes(s))) {
  console.error(`--scenario must be kill, nats-restart, rolling or all (got ${values.scenario})`);
  process.exit(2);
}
const turns = Number(values.turns);
if (!Number.isInteger(turns) || turns < 4) {
  console.error('--turns must be an integer ≥ 4');
  process.exit(2);
}

const results = [];
for (const scenario of scenarios) {
  console.log(`\n== ${scenario}: ${turns} turns, two instances of every stage ==`);
  const r = await runChaos({
    scenario,
    turns,
    outDir: join(tmpdir(), `va-chaos-${process.pid}`),
    onProgress: (line) => console.log(`  · ${line}`),
  });
  const recoveries = r.events.map((e) => e.recoveryMs).filter((ms) => ms !== null);
  console.log(`  turns lost: ${r.lost.length}${r.lost.length ? ` (${r.lost.join(' | ')})` : ''}`);
  console.log(`  answered twice: ${r.answeredTwice.length}`);
  console.log(`  crashes: ${r.crashes.length}${r.crashes.length ? ` (${r.crashes.join('; ')})` : ''}`);
  console.log(`  history messages stored: ${r.historyMessages}`);
  for (const e of r.events) {
    console.log(`  turn ${e.atTurn}: ${e.action}${e.stage ? ` ${e.stage}` : ''} → ${e.recoveryMs ?? '–'} ms`);
  }
  if (recoveries.length) console.log(`  recovery max: ${Math.max(...recoveries)} ms`);
  results.push({ ...r, recording: undefined });
}
if (values.json) await writeFile(values.json, JSON.stringify(results, null, 2));
const failed = results.some((r) => r.lost.length || r.answeredTwice.length || r.crashes.length);
process.exit(failed ? 1 : 0);
