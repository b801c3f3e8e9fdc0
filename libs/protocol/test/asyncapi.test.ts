import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Parser } from '@asyncapi/parser';
import { describe, expect, it } from 'vitest';
// The same function writes the file (a plain ESM script of the repo).
import { asyncApiYaml } from '../../../scripts/asyncapi-yaml.mjs';

const FILE = fileURLToPath(new URL('../../../docs/asyncapi.yaml', import.meta.url));

describe('the AsyncAPI contract (docs/asyncapi.yaml)', () => {
  it('is what libs/protocol generates (node scripts/asyncapi.mjs)', async () => {
    expect(readFileSync(FILE, 'utf8')).toBe(await (asyncApiYaml as () => Promise<string>)());
  });

  it('is a valid AsyncAPI 3 document, with every subject of the protocol', async () => {
    const { document, diagnostics } = await new Parser().parse(readFileSync(FILE, 'utf8'));
    const errors = diagnostics.filter((d) => d.severity === 0);
    expect(errors.map((d) => `${d.path.join('.')}: ${d.message}`)).toEqual([]);
    expect(document).toBeDefined();
    const addresses = document!
      .channels()
      .all()
      .map((c) => c.address());
    for (const a of [
      'va.v1.sess.{sessionId}.turn',
      'va.v1.sess.{sessionId}.audio.out',
      'va.v1.session.open',
      'va.v1.ctx.get',
    ]) {
      expect(addresses).toContain(a);
    }
    expect(document!.operations().all().length).toBeGreaterThan(20);
  });
});
