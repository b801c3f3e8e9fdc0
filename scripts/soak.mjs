#!/usr/bin/env node
// npm run soak: N sessions for M minutes through the real stages; every process's heap, NATS subscriptions and
// active handles sampled from its health endpoint. Heap flat after warm-up (±10 %), idle figures back after.
// Usage: npm run soak -- [--sessions N] [--minutes M] [--json FILE] [--warmup SEC] [--every SEC] [--profile cloud|offline]
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { formatSoakTable, runSoak } from '@va/e2e';

const { values } = parseArgs({
  options: {
    sessions: { type: 'string', default: '100' },
    minutes: { type: 'string', default: '10' },
    json: { type: 'string' },
    warmup: { type: 'string' },
    every: { type: 'string', default: '10' },
    profile: { type: 'string', default: 'cloud' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  console.log(
    'usage: npm run soak -- [--sessions N] [--minutes M] [--json FILE] [--warmup SEC] [--every SEC] [--profile cloud|offline]\n' +
      '  cloud (default): timed STT + fake TTS with cloud timing (fits 100 sessions on 2 cores); offline: pocketsphinx + flite',
  );
  process.exit(0);
}
const positive = (name) => {
  const n = Number(values[name]);
  if (!Number.isFinite(n) || n <= 0) {
    console.error(`--${name} must be a positive number`);
    process.exit(2);
  }
  return n;
};
if (values.profile !== 'cloud' && values.profile !== 'offline') {
  console.error('--profile must be cloud or offline');
  process.exit(2);
}

const report = await runSoak({
  sessions: Math.round(positive('sessions')),
  minutes: positive('minutes'),
  sampleEverySec: positive('every'),
  ...(values.warmup !== undefined ? { warmupSec: positive('warmup') } : {}),
  profile: values.profile,
  onProgress: (line) => console.log(line),
});
console.log(`\n${formatSoakTable(report)}`);
if (values.json) {
  await writeFile(values.json, JSON.stringify(report, null, 2));
  console.log(`\nJSON: ${values.json}`);
}
const flat = report.processes.every((p) => p.heapFlat !== false);
const back = report.processes.every((p) => p.backToIdle !== false);
console.log(
  `\nheap flat within ±${Math.round(report.heapTolerance * 100)} %: ${flat ? 'yes' : 'no'}; back to idle: ${back ? 'yes' : 'no'}`,
);
process.exit(back ? 0 : 1);
