import { spawn, type ChildProcess } from 'node:child_process';
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
  return new NodeChild(child, name, maxLifetimeSec);
}

/** A child's stdout and stderr, line by line, and both merged for error messages. */
class ChildOutput {
  readonly lines: string[] = [];
  readonly stderr: string[] = [];
  private readonly merged: string[] = [];

  constructor(child: ChildProcess, name: string) {
    const verbose = process.env.VA_TEST_VERBOSE === '1';
    const collect = (stream: NodeJS.ReadableStream, into: string[], tag: string) => {
      createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => {
        into.push(line);
        this.merged.push(`${tag} ${line}`);
        if (verbose) process.stderr.write(`[${name} ${tag}] ${line}\n`);
      });
    };
    collect(child.stdout!, this.lines, 'out');
    collect(child.stderr!, this.stderr, 'err');
  }

  /** A line for error messages only (e.g. why the spawn failed). */
  note(text: string): void {
    this.merged.push(text);
  }

  /** The last lines of both streams, for an error message. */
  tail(): string {
    return this.merged.slice(-TAIL_LINES).join('\n') || '(no output)';
  }
}

function parseObject(line: string): object | undefined {
  try {
    const value: unknown = JSON.parse(line);
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

class NodeChild implements ChildHandle {
  readonly pid: number;
  readonly lines: string[];
  readonly stderr: string[];
  readonly exited: Promise<ChildExit>;
  private readonly output: ChildOutput;
  private exit: ChildExit | undefined;
  private readonly killNow = () => {
    if (this.running()) this.child.kill('SIGKILL');
  };

  constructor(
    private readonly child: ChildProcess,
    readonly name: string,
    maxLifetimeSec: number,
  ) {
    this.pid = child.pid ?? -1;
    this.output = new ChildOutput(child, name);
    this.lines = this.output.lines;
    this.stderr = this.output.stderr;
    this.exited = new Promise<ChildExit>((resolve) => {
      // 'close' waits for stdout/stderr to be fully read, so `lines` is complete once this resolves.
      child.once('close', (code, signal) => resolve((this.exit = { code, signal })));
      child.once('error', (err) => {
        this.output.note(`spawn error: ${err.message}`);
        resolve((this.exit = { code: null, signal: null }));
      });
    });
    installExitHook();
    live.add(this.killNow);
    const lifetimeTimer = setTimeout(this.killNow, maxLifetimeSec * 1000).unref();
    void this.exited.then(() => {
      live.delete(this.killNow);
      clearTimeout(lifetimeTimer);
    });
  }

  jsonLines(): unknown[] {
    return this.lines.map(parseObject).filter((v) => v !== undefined);
  }

  waitForLine(pred: (line: string) => boolean, timeoutMs = 10_000): Promise<string> {
    return this.findLine((line) => (pred(line) ? line : undefined), 'a matching stdout line', timeoutMs);
  }

  waitForJson<T = unknown>(pred: JsonLinePredicate, timeoutMs = 10_000): Promise<T> {
    const match = (line: string) => {
      const obj = parseObject(line);
      return obj !== undefined && pred(obj) ? (obj as T) : undefined;
    };
    return this.findLine(match, 'a matching JSON stdout line', timeoutMs);
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.running()) this.child.kill(signal);
  }

  async stop(timeoutMs = 5_000): Promise<ChildExit> {
    if (this.running()) {
      this.child.kill('SIGTERM');
      const timer = setTimeout(this.killNow, timeoutMs);
      await this.exited;
      clearTimeout(timer);
    }
    return this.exited;
  }

  private running(): boolean {
    return this.exit === undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Polls the collected stdout lines; fails early if the child exits first. */
  private async findLine<T>(match: (line: string) => T | undefined, what: string, timeoutMs: number): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    let scanned = 0;
    const scan = (): T | undefined => {
      for (; scanned < this.lines.length; scanned++) {
        const found = match(this.lines[scanned]!);
        if (found !== undefined) return found;
      }
      return undefined;
    };
    for (;;) {
      const found = scan();
      if (found !== undefined) return found;
      const ended = !this.running();
      if (ended || Date.now() >= deadline) {
        const why = ended ? this.exitDescription() : `timed out after ${timeoutMs} ms`;
        // Exited: read the last lines before giving up (they may still be in flight).
        if (ended) {
          await this.exited;
          const last = scan();
          if (last !== undefined) return last;
        }
        throw new Error(`${this.name} ${why} while waiting for ${what}. Last output:\n${this.output.tail()}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }

  private exitDescription(): string {
    const { exit, child } = this;
    return `exited (code ${exit?.code ?? child.exitCode}, signal ${exit?.signal ?? child.signalCode})`;
  }
}
