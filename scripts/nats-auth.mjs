#!/usr/bin/env node
// Writes deploy/nats/auth.conf and deploy/k8s/nats-auth-values.yaml (the NATS users and their permissions) from the table in
// libs/protocol/src/permissions.ts. `--check` exits 1 when the checked-in file differs (run `npm run build` first).
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { natsAuthConfig, natsAuthHelmValues } from '@va/protocol';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const targets = [
  [join(root, 'deploy', 'nats', 'auth.conf'), natsAuthConfig()],
  [join(root, 'deploy', 'k8s', 'nats-auth-values.yaml'), natsAuthHelmValues()],
];

let stale = false;
for (const [target, want] of targets) {
  const name = relative(process.cwd(), target);
  if (process.argv.includes('--check')) {
    const have = await readFile(target, 'utf8').catch(() => '');
    if (have !== want) {
      process.stderr.write(`${name} is out of date: run node scripts/nats-auth.mjs\n`);
      stale = true;
    } else process.stdout.write(`${name} is up to date\n`);
  } else {
    await writeFile(target, want);
    process.stdout.write(`wrote ${name}\n`);
  }
}
if (stale) process.exit(1);
