#!/usr/bin/env node
// Rewrites the subject table in docs/architecture.md from libs/protocol (channels, requests, STAGE_ACCESS).
// `--check` exits 1 when the doc's table differs (run `npm run build` first).
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { withSubjectTable } from '@va/protocol';

const doc = join(dirname(fileURLToPath(import.meta.url)), '..', 'docs', 'architecture.md');
const have = await readFile(doc, 'utf8');
const want = withSubjectTable(have);
if (process.argv.includes('--check')) {
  if (have !== want) {
    process.stderr.write(
      'docs/architecture.md: the subject table is out of date: run node scripts/subject-table.mjs\n',
    );
    process.exit(1);
  }
  process.stdout.write('docs/architecture.md: the subject table is up to date\n');
} else {
  await writeFile(doc, want);
  process.stdout.write('wrote the subject table in docs/architecture.md\n');
}
