#!/usr/bin/env node
// npm run chaos: faults during a scripted conversation through two instances of every stage.
// Usage: npm run chaos -- [--scenario kill|nats-restart|nats-node|rolling|all|each] [--turns N] [--stages a,b] [--at speech|answer] [--json FILE]
//   --stages (kill only): the stages to kill, in turn, six kills in all (default: each stage but the gateway once)
//   --at (kill only): 400 ms into the user's speech (default), or 300 ms into the streaming answer
//   all (the default): every fault in ONE conversation on a three-node NATS cluster, played by a caller on the talk page
//   through two gateways behind nginx (the serving one is killed too); each: every scenario in its own
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { runChaos } from '@va/e2e';
import { STAGES } from '@va/protocol';

const { values } = parseArgs({
  options: {
    scenario: { type: 'string', default: 'all' },
    turns: { type: 'string', default: '20' },
    stages: { type: 'string' },
    at: { type: 'string', default: 'speech' },
    json: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  console.log(
    'usage: npm run chaos -- [--scenario kill|nats-restart|nats-node|rolling|all|each] [--turns N] [--stages a,b] [--at speech|answer] [--json FILE]\n' +
      '  --stages (kill only): the stages to kill, in turn, six kills in all (default: each stage but the gateway once)\n' +
      "  --at (kill only): 400 ms into the user's speech (default), or 300 ms into the streaming answer",
  );
  process.exit(0);
}
// `all`: every fault in one conversation (on a three-node NATS cluster); `each`: every scenario in its own.
const SCENARIOS = ['kill', 'nats-restart', 'nats-node', 'rolling'];
const scenarios = values.scenario === 'each' ? SCENARIOS : [values.scenario];
if (!scenarios.every((s) => [...SCENARIOS, 'all'].includes(s))) {
  console.error(`--scenario must be ${SCENARIOS.join(', ')} all or each (got ${values.scenario})`);
  process.exit(2);
}
const turns = Number(values.turns);
const minTurns = values.scenario === 'all' ? 20 : 4;
if (!Number.isInteger(turns) || turns < minTurns) {
  console.error(`--turns must be an integer ≥ ${minTurns}`);
  process.exit(2);
}

const killStages = values.stages?.split(',').map((s) => s.trim());
const killable = STAGES.filter((s) => s !== 'media-gateway');
if (killStages && (killStages.length === 0 || !killStages.every((s) => killable.includes(s)))) {
  console.error(`--stages must name stages among ${killable.join(', ')} (got ${values.stages})`);
  process.exit(2);
}

if (values.at !== 'speech' && values.at !== 'answer') {
  console.error(`--at must be speech or answer (got ${values.at})`);
  process.exit(2);
}

const results = [];
for (const scenario of scenarios) {
  console.log(`\n== ${scenario}: ${turns} turns, two instances of every stage ==`);
  const outDir = join(tmpdir(), `va-chaos-${process.pid}-${scenario}`);
  const r = await runChaos({
    scenario,
    turns,
    ...(killStages ? { killStages } : {}),
    killAt: values.at,
    outDir,
    onProgress: (line) => console.log(`  · ${line}`),
  });
  const recoveries = r.events.map((e) => e.recoveryMs).filter((ms) => ms !== null);
  console.log(`  turns lost: ${r.lost.length}${r.lost.length ? ` (${r.lost.join(' | ')})` : ''}`);
  console.log(`  answered twice: ${r.answeredTwice.length}`);
  console.log(`  crashes: ${r.crashes.length}${r.crashes.length ? ` (${r.crashes.join('; ')})` : ''}`);
  console.log(`  history messages stored: ${r.historyMessages}`);
  for (const e of r.events) {
    console.log(
      `  turn ${e.atTurn}: ${e.action}${e.stage ? ` ${e.stage}` : ''} → ${e.recoveryMs ?? '–'} ms` +
        (e.kvRecoveryMs !== undefined ? ` (KV writable again after ${e.kvRecoveryMs ?? '–'} ms)` : '') +
        (e.resumedMs !== undefined
          ? ` (the caller's socket lost → resumed in ${e.resumedMs ?? '–'} ms; agent silent ` +
            `${e.audibleGapMs === null ? 'for the rest of that answer' : `${e.audibleGapMs} ms`})`
          : '') +
        (e.answerHeardWhole !== undefined
          ? `; answer heard ${e.answerHeardWhole ? 'whole, once' : 'NOT whole once'}`
          : '') +
        (e.said !== undefined ? `; said "${e.said}", heard "${e.heard ?? ''}"` : ''),
    );
  }
  if (recoveries.length) console.log(`  recovery max: ${Math.max(...recoveries)} ms`);
  console.log(`  recording, spans and every process's log: ${outDir}`);
  results.push({ ...r, recording: undefined });
}
if (values.json) await writeFile(values.json, JSON.stringify(results, null, 2));
const failed = results.some((r) => r.lost.length || r.answeredTwice.length || r.crashes.length);
process.exit(failed ? 1 : 0);
