// Writes docs/asyncapi.yaml, the AsyncAPI 3 contract of the bus, from libs/protocol (run after a protocol change;
// libs/protocol/test/asyncapi.test.ts fails while the file is stale). `--check`: exit 1 if it is stale.
import { readFile, writeFile } from 'node:fs/promises';
import { asyncApiYaml } from './asyncapi-yaml.mjs';

const target = new URL('../docs/asyncapi.yaml', import.meta.url);
const want = await asyncApiYaml();
if (process.argv.includes('--check')) {
  const have = await readFile(target, 'utf8').catch(() => '');
  if (have !== want) {
    process.stderr.write('docs/asyncapi.yaml is out of date: run node scripts/asyncapi.mjs\n');
    process.exit(1);
  }
  process.stdout.write('docs/asyncapi.yaml is up to date\n');
} else {
  await writeFile(target, want);
  process.stdout.write('wrote docs/asyncapi.yaml\n');
}
