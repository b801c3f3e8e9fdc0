import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { aptPlan, hasBinary, missingApt } from '../bootstrap.mjs';

const script = fileURLToPath(new URL('../bootstrap.mjs', import.meta.url));

describe('bootstrap apt decision', () => {
  it('reports packages whose binary or file is missing, once each', () => {
    const missing = missingApt([
      { bin: 'node', pkg: 'nodejs' },
      { bin: 'no-such-binary-4f2a', pkg: 'sox' },
      { file: '/no/such/libpocketsphinx.so.3', pkg: 'libpocketsphinx3' },
      { file: '/no/such/other.so', pkg: 'libpocketsphinx3' },
      { file: fileURLToPath(import.meta.url), pkg: 'present' },
    ]);
    expect(missing).toEqual(['sox', 'libpocketsphinx3']);
  });

  it('installs as root, and only prints the sudo line otherwise', () => {
    expect(aptPlan([], true)).toEqual({ commands: [] });
    expect(aptPlan(['sox', 'flite'], true).commands).toEqual([
      ['apt-get', 'update'],
      ['apt-get', 'install', '-y', '--no-install-recommends', 'sox', 'flite'],
    ]);
    const user = aptPlan(['sox'], false);
    expect(user.commands).toEqual([]);
    expect(user.hint).toBe('sudo apt-get update && sudo apt-get install -y --no-install-recommends sox');
  });

  // Debian installs nats-server in /usr/sbin, which a normal user's PATH lacks.
  it.skipIf(!existsSync('/usr/sbin/nats-server'))('finds sbin binaries even when PATH lacks the sbin dirs', () => {
    expect(hasBinary('nats-server', '/usr/bin:/bin')).toBe(true);
    expect(hasBinary('sh', '/no/such/dir')).toBe(false);
  });

  it('--dry-run changes nothing and exits 0', () => {
    const r = spawnSync(process.execPath, [script, '--dry-run'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^\[bootstrap\] apt: /m);
    expect(r.stdout).toMatch(/^\[bootstrap\] (npm|build): /m);
  });

  it('rejects unknown options', () => {
    expect(spawnSync(process.execPath, [script, '--nope']).status).toBe(2);
  });
});
