import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { basename } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';

export interface SpawnNodeOptions {
  args?: string[];
  /** Merged over the parent's process.env. */
  env?: Record<string, string>;
  cwd?: string;
  /** The child is SIGKILLed after this many seconds. Default 600. */
  maxLifetimeSec?: number;
  /** Label for error messages and verbose echo. Default: the entry's file name. */
  name?: string;
}

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Predicate over a parsed JSON line; `any` so tests can write `(m) => m.type === 'ready'`. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type JsonLinePredicate = (obj: any) => boolean;

export interface ChildHandle {
  /** PID of the node process itself. */
  pid: number;
  name: string;
  /** stdout lines so far. */
  lines: string[];
  /** stderr lines so far. */
  stderr: string[];
  /** stdout lines that parse as JSON objects. */
  jsonLines(): unknown[];
  waitForLine(pred: (line: string) => boolean, timeoutMs?: number): Promise<string>;
  waitForJson<T = unknown>(pred: JsonLinePredicate, timeoutMs?: number): Promise<T>;
  kill(signal?: NodeJS.Signals): void;
  exited: Promise<ChildExit>;
  /** SIGTERM, then SIGKILL after timeoutMs; resolves with how it exited. */
  stop(timeoutMs?: number): Promise<ChildExit>;
}

/*
 * Lifetime bounding. Tests send signals to `pid` and compare it with PIDs the child reports, so the child
 * must be node itself, not a `timeout` wrapper (the wrapper would take the signal, and `--foreground`
 * still leaves pid = wrapper). Instead we spawn node directly and bound its life three ways:
 *  - an unref'd timer in this process SIGKILLs it after maxLifetimeSec;
 *  - a process 'exit' hook here SIGKILLs any child still alive when the test process exits normally;
 *  - a tiny preload (data: URL, so nothing to locate on disk) in the child polls this process's pid and
 *    SIGKILLs itself once we are gone, covering a test process killed by a signal where no hook runs.
 */
const live = new Set<() => void>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const killNow of live) killNow();
  });
}

function orphanGuard(parentPid: number): string {
  const code =
    `const p=${parentPid};setInterval(()=>{try{process.kill(p,0)}catch(e){` +
    `if(e.code==='ESRCH')process.kill(process.pid,'SIGKILL')}},1000).unref();`;
  return `data:text/javascript,${encodeURIComponent(code)}`;
}

/** tsx resolved from this package, so `--import` works whatever the child's cwd is. */
function tsxLoaderUrl(): string {
  return pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
}

const TAIL_LINES = 20;

/** Runs `entry` in a new node process (`.ts` entries through tsx) and collects its output line by line. */
export function spawnNode(entry: string, opts: SpawnNodeOptions = {}): ChildHandle {
  const { args = [], env, cwd, maxLifetimeSec = 600, name = basename(entry) } = opts;
  const nodeArgs = ['--import', orphanGuard(process.pid)];
  if (entry.endsWith('.ts')) nodeArgs.push('--import', tsxLoaderUrl());
  const child = spawn(process.execPath, [...nodeArgs, entry, ...args], {
    cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });

  const lines: string[] = [];
  const stderr: string[] = [];
  const merged: string[] = []; // both streams, for error messages
  const verbose = process.env.VA_TEST_VERBOSE === '1';
  const collect = (stream: NodeJS.ReadableStream, into: string[], tag: string) => {
    createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => {
      into.push(line);
      merged.push(`${tag} ${line}`);
      if (verbose) process.stderr.write(`[${name} ${tag}] ${line}\n`);
    });
  };
  collect(child.stdout!, lines, 'out');
  collect(child.stderr!, stderr, 'err');

  let exit: ChildExit | undefined;
  const exited = new Promise<ChildExit>((resolve) => {
    // 'close' waits for stdout/stderr to be fully read, so `lines` is complete once this resolves.
    child.once('close', (code, signal) => resolve((exit = { code, signal })));
    child.once('error', (err) => {
      merged.push(`spawn error: ${err.message}`);
      resolve((exit = { code: null, signal: null }));
    });
  });
  const running = () => exit === undefined && child.exitCode === null && child.signalCode === null;

  const killNow = () => {
    if (running()) child.kill('SIGKILL');
  };
  installExitHook();
  live.add(killNow);
  const lifetimeTimer = setTimeout(killNow, maxLifetimeSec * 1000).unref();
  void exited.then(() => {
    live.delete(killNow);
    clearTimeout(lifetimeTimer);
  });

  const tail = () => merged.slice(-TAIL_LINES).join('\n') || '(no output)';

  /** Polls the collected stdout lines; fails early if the child exits first. */
  const findLine = async <T>(match: (line: string) => T | undefined, what: string, timeoutMs: number) => {
    const deadline = Date.now() + timeoutMs;
    let scanned = 0;
    for (;;) {
      for (; scanned < lines.length; scanned++) {
        const found = match(lines[scanned]!);
        if (found !== undefined) return found;
      }
      const ended = !running();
      if (ended || Date.now() >= deadline) {
        const why = ended
          ? `exited (code ${exit?.code ?? child.exitCode}, signal ${exit?.signal ?? child.signalCode})`
          : `timed out after ${timeoutMs} ms`;
        // Exited: read the last lines before giving up (they may still be in flight).
        if (ended) {
          await exited;
          for (; scanned < lines.length; scanned++) {
            const found = match(lines[scanned]!);
            if (found !== undefined) return found;
          }
        }
        throw new Error(`${name} ${why} while waiting for ${what}. Last output:\n${tail()}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  };

  const parseObject = (line: string): object | undefined => {
    try {
      const value: unknown = JSON.parse(line);
      return typeof value === 'object' && value !== null && !Array.isArray(value) ? value : undefined;
    } catch {
      return undefined;
    }
  };

  const handle: ChildHandle = {
    pid: child.pid ?? -1,
    name,
    lines,
    stderr,
    jsonLines: () => lines.map(parseObject).filter((v) => v !== undefined),
    waitForLine: (pred, timeoutMs = 10_000) =>
      findLine((line) => (pred(line) ? line : undefined), 'a matching stdout line', timeoutMs),
    waitForJson: <T>(pred: JsonLinePredicate, timeoutMs = 10_000) =>
      findLine(
        (line) => {
          const obj = parseObject(line);
          return obj !== undefined && pred(obj) ? (obj as T) : undefined;
        },
        'a matching JSON stdout line',
        timeoutMs,
      ),
    kill: (signal = 'SIGTERM') => {
      if (running()) child.kill(signal);
    },
    exited,
    async stop(timeoutMs = 5_000) {
      if (running()) {
        child.kill('SIGTERM');
        const timer = setTimeout(killNow, timeoutMs);
        await exited;
        clearTimeout(timer);
      }
      return exited;
    },
  };
  return handle;
}
