#!/usr/bin/env node
// Makes a fresh clone ready: Debian packages, npm dependencies, TypeScript build.
// Plain Node, no dependencies: it runs before node_modules exists.
// Usage: node scripts/bootstrap.mjs [--dry-run] [--no-build] [--tests]   (--tests: what only the tests need, too)
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

// Each entry is present if `bin` is an executable on PATH (or in an sbin dir) or `file` exists.
/** @type {{ bin?: string, file?: string, pkg: string, testsOnly?: boolean }[]} */
export const REQUIRED_APT = [
  { bin: 'nats-server', pkg: 'nats-server' },
  // Offline speech: flite speaks (TTS and the test/demo user's voice), pocketsphinx listens (STT).
  { bin: 'flite', pkg: 'flite' },
  { file: '/usr/lib/x86_64-linux-gnu/libpocketsphinx.so.3', pkg: 'libpocketsphinx3' },
  { file: '/usr/share/pocketsphinx/model/en-us/en-us.lm.bin', pkg: 'pocketsphinx-en-us' },
  // A second synthesizer: the end-of-turn bench and its model's fit speak their corpus in flite's and its voices.
  { bin: 'espeak-ng', pkg: 'espeak-ng' },
  // The browser end-to-end test drives the talk page in headless Chromium (playwright-core never downloads one).
  { bin: 'chromium', pkg: 'chromium', testsOnly: true },
  // The gateway failover test and `npm run chaos` put the talk page behind nginx (deploy/nginx/voice-agent.conf),
  // as in production.
  { bin: 'nginx', pkg: 'nginx-light' },
];

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const NPMRC_LINE = 'onnxruntime-node-install=skip';
// Debian puts nats-server in /usr/sbin, which is not on a normal user's PATH.
const EXTRA_BIN_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

const log = (msg) => console.log(`[bootstrap] ${msg}`);

class BootstrapError extends Error {}

export function hasBinary(bin, pathEnv = process.env.PATH ?? '') {
  const dirs = [...pathEnv.split(delimiter).filter(Boolean), ...EXTRA_BIN_DIRS];
  return dirs.some((dir) => {
    try {
      accessSync(join(dir, bin), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

export function missingApt(list = REQUIRED_APT) {
  const missing = list.filter((e) => (e.bin ? !hasBinary(e.bin) : !existsSync(e.file)));
  return [...new Set(missing.map((e) => e.pkg))];
}

/** What to do about missing Debian packages: commands to run as root, or a hint for the user. */
export function aptPlan(pkgs, isRoot) {
  if (pkgs.length === 0) return { commands: [] };
  const install = ['apt-get', 'install', '-y', '--no-install-recommends', ...pkgs];
  if (!isRoot) return { commands: [], hint: `sudo apt-get update && sudo ${install.join(' ')}` };
  return { commands: [['apt-get', 'update'], install] };
}

function mtime(file) {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return undefined;
  }
}

/** Workspace dirs from the root package.json; supports "dir/*" and plain paths, as used here. */
function workspaceDirs(rootPkg) {
  return (rootPkg.workspaces ?? []).flatMap((pattern) => {
    if (!pattern.endsWith('/*')) return [pattern];
    const parent = pattern.slice(0, -2);
    if (!existsSync(join(ROOT, parent))) return [];
    return readdirSync(join(ROOT, parent), { withFileTypes: true })
      .filter((d) => d.isDirectory() && existsSync(join(ROOT, parent, d.name, 'package.json')))
      .map((d) => `${parent}/${d.name}`);
  });
}

const DEP_FIELDS = ['dependencies', 'devDependencies', 'optionalDependencies', 'peerDependencies'];

/** Same check `npm ci` makes, roughly: does the lock record the deps each package.json declares? */
function lockMatches(lock, manifests) {
  return manifests.every(([dir, pkg]) => {
    const entry = lock.packages?.[dir];
    if (!entry) return false;
    return DEP_FIELDS.every((field) => {
      const a = pkg[field] ?? {};
      const b = entry[field] ?? {};
      const keys = Object.keys(a);
      return keys.length === Object.keys(b).length && keys.every((k) => a[k] === b[k]);
    });
  });
}

/** Returns the npm command to run, or undefined when node_modules is current, plus the reason. */
export function npmPlan() {
  const rootPkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
  const manifests = [['', rootPkg]];
  for (const dir of workspaceDirs(rootPkg)) {
    manifests.push([dir, JSON.parse(readFileSync(join(ROOT, dir, 'package.json'), 'utf8'))]);
  }
  const lockFile = join(ROOT, 'package-lock.json');
  const installed = mtime(join(ROOT, 'node_modules', '.package-lock.json'));

  let reason;
  if (installed === undefined) reason = 'node_modules missing';
  else if ((mtime(lockFile) ?? 0) > installed) reason = 'package-lock.json changed';
  else {
    const newer = manifests.find(([dir]) => mtime(join(ROOT, dir, 'package.json')) > installed);
    if (newer) reason = `${join(newer[0], 'package.json')} changed`;
  }
  if (!reason) return { reason: 'node_modules up to date' };

  if (!existsSync(lockFile)) return { command: ['npm', 'install'], reason: `${reason}, no package-lock.json` };
  // `npm ci` refuses a lock that lags behind a package.json (someone added a dep without `npm install`).
  const lock = JSON.parse(readFileSync(lockFile, 'utf8'));
  if (!lockMatches(lock, manifests)) {
    return { command: ['npm', 'install'], reason: `${reason}; package-lock.json is out of sync, commit the update` };
  }
  return { command: ['npm', 'ci'], reason };
}

function run(cmd, args, { env, show = [cmd, ...args].join(' ') } = {}) {
  log(`$ ${show}`);
  const r = spawnSync(cmd, args, { cwd: ROOT, stdio: 'inherit', env: { ...process.env, ...env } });
  if (r.error) throw new BootstrapError(`${cmd} could not start: ${r.error.message}`);
  if (r.status !== 0) throw new BootstrapError(`${cmd} ${args.join(' ')} failed (exit ${r.status ?? r.signal})`);
}

function stepApt(dryRun, tests) {
  const wanted = REQUIRED_APT.filter((e) => tests || !e.testsOnly);
  const pkgs = missingApt(wanted);
  if (pkgs.length === 0) {
    log(`apt: ok (${wanted.map((e) => e.pkg).join(', ')})`);
    return;
  }
  const isRoot = process.getuid?.() === 0;
  const plan = aptPlan(pkgs, isRoot);
  log(`apt: missing ${pkgs.join(', ')}`);
  if (plan.hint) {
    if (dryRun) return log(`apt: would ask you to run: ${plan.hint}`);
    throw new BootstrapError(`missing Debian packages; not root, so run:\n  ${plan.hint}`);
  }
  for (const [cmd, ...args] of plan.commands) {
    if (dryRun) log(`apt: would run: ${[cmd, ...args].join(' ')}`);
    else run(cmd, args, { env: { DEBIAN_FRONTEND: 'noninteractive' } });
  }
}

function stepNpm(dryRun) {
  // onnxruntime-node's install script downloads GPU binaries from outside the npm registry unless this is set.
  const npmrc = existsSync(join(ROOT, '.npmrc')) ? readFileSync(join(ROOT, '.npmrc'), 'utf8') : '';
  if (!npmrc.split(/\r?\n/).some((l) => l.trim() === NPMRC_LINE)) {
    throw new BootstrapError(`.npmrc must contain "${NPMRC_LINE}" (see DESIGN.md §9); restore it before installing`);
  }
  const plan = npmPlan();
  if (!plan.command) return log(`npm: skip (${plan.reason})`);
  log(`npm: ${plan.reason}`);
  if (dryRun) return log(`npm: would run: ${plan.command.join(' ')}`);
  run(plan.command[0], plan.command.slice(1));
}

function stepBuild(dryRun, build) {
  if (!build) return log('build: skip (--no-build)');
  // Same as `npx tsc -b`, minus npx's start-up time and its npmrc warnings.
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  if (dryRun) return log('build: would run: tsc -b');
  if (!existsSync(tsc)) throw new BootstrapError('typescript is not installed (node_modules/typescript missing)');
  run(process.execPath, [tsc, '-b'], { show: 'tsc -b' });
}

function main(argv) {
  const known = new Set(['--dry-run', '--no-build', '--tests']);
  const unknown = argv.filter((a) => !known.has(a));
  if (unknown.length) {
    console.error(
      `[bootstrap] unknown option ${unknown.join(' ')}; usage: bootstrap.mjs [--dry-run] [--no-build] [--tests]`,
    );
    return 2;
  }
  const dryRun = argv.includes('--dry-run');
  const started = Date.now();
  try {
    stepApt(dryRun, argv.includes('--tests'));
    stepNpm(dryRun);
    stepBuild(dryRun, !argv.includes('--no-build'));
  } catch (err) {
    if (!(err instanceof BootstrapError)) throw err;
    console.error(`[bootstrap] FAILED: ${err.message}`);
    return 1;
  }
  log(`${dryRun ? 'dry run ' : ''}done in ${Date.now() - started} ms`);
  return 0;
}

// Run only when executed, so the test can import the pure helpers.
if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  process.exitCode = main(process.argv.slice(2));
}
