import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { freePort } from './wait.js';

export interface NatsServerOptions {
  /** Enable JetStream (`-js -sd <storeDir>`). Default true. */
  jetstream?: boolean;
  /** The server stops itself after this many seconds, even if the test process dies. Default 1800. */
  maxLifetimeSec?: number;
  /**
   * Server configuration text (e.g. deploy/nats/auth.conf's `authorization` block), written to a file passed
   * with `-c`; the listen address, port and JetStream flags above still apply (flags override the file).
   */
  config?: string;
  /** Extra environment of the server process (values for `$VAR` references in `config`). */
  env?: Record<string, string>;
}

export interface NatsServerHandle {
  /** 'nats://127.0.0.1:PORT' */
  url: string;
  port: number;
  /** PID of the nats-server process itself (killing it simulates a server crash). */
  pid: number;
  /** Fresh temporary JetStream store directory, removed by stop(). */
  storeDir: string;
  stop(): Promise<void>;
  /** Stops the server (SIGTERM) and starts it again on the same port with the same JetStream store. */
  restart(): Promise<void>;
}

const READY_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 5_000;
const PORT_ATTEMPTS = 3;

/** Servers not yet stopped, keyed by the pid of their `timeout` wrapper (= their process group id). */
const running = new Map<number, { storeDir: string }>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // 'exit' handlers must be synchronous: SIGKILL the whole group (wrapper + server) and drop the store.
  process.on('exit', () => {
    for (const [groupId, { storeDir }] of running) {
      killGroup(groupId, 'SIGKILL');
      rmSync(storeDir, { recursive: true, force: true });
    }
    running.clear();
  });
}

/** `timeout` puts itself and the server in a new process group led by itself, so -pid reaches both. */
function killGroup(groupId: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-groupId, signal);
  } catch {
    // already gone
  }
}

function findExecutable(name: string, extraDirs: string[]): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...extraDirs];
  for (const dir of dirs) {
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

export function findNatsServerBinary(): string {
  const found = findExecutable('nats-server', ['/usr/sbin', '/usr/local/bin', '/usr/bin']);
  if (!found) {
    throw new Error(
      'nats-server binary not found on PATH, /usr/sbin, /usr/local/bin or /usr/bin. ' +
        "Run 'npm test' from the repo root (its bootstrap installs it) or 'apt-get install nats-server'.",
    );
  }
  return found;
}

class PortInUseError extends Error {}

/** Starts a fresh nats-server on a free loopback port; resolves once it logs "Server is ready". */
export async function startNatsServer(opts: NatsServerOptions = {}): Promise<NatsServerHandle> {
  const binary = findNatsServerBinary();
  installExitHook();
  // freePort() closes its socket before the server binds, so another process may grab the port: retry.
  for (let attempt = 1; ; attempt++) {
    try {
      return await launch(binary, await freePort(), opts);
    } catch (err) {
      if (!(err instanceof PortInUseError) || attempt >= PORT_ATTEMPTS) throw err;
    }
  }
}

async function launch(
  binary: string,
  port: number,
  opts: NatsServerOptions,
  extraArgs: readonly string[] = [],
): Promise<NatsServerHandle> {
  const { jetstream = true, maxLifetimeSec = 1800 } = opts;
  const storeDir = mkdtempSync(join(tmpdir(), 'va-nats-'));
  const serverArgs = ['-a', '127.0.0.1', '-p', String(port), ...extraArgs];
  if (opts.config !== undefined) {
    const configFile = join(storeDir, 'server.conf');
    writeFileSync(configFile, opts.config);
    serverArgs.unshift('-c', configFile);
  }
  if (jetstream) serverArgs.push('-js', '-sd', storeDir);

  /** One run of the server process (a restart is a second run on the same port and store). */
  const run = async () => {
    // coreutils `timeout` bounds the server's life even if this process is SIGKILLed and no hook runs.
    const wrapper = spawn('timeout', ['--kill-after=5', String(maxLifetimeSec), binary, ...serverArgs], {
      stdio: ['ignore', 'ignore', 'pipe'],
      ...(opts.env ? { env: { ...process.env, ...opts.env } } : {}),
    });
    const exited = new Promise<void>((resolve) => wrapper.once('exit', () => resolve()));
    if (wrapper.pid !== undefined) running.set(wrapper.pid, { storeDir });
    const end = async () => {
      const groupId = wrapper.pid!;
      if (wrapper.exitCode === null && wrapper.signalCode === null) {
        killGroup(groupId, 'SIGTERM');
        const timer = setTimeout(() => killGroup(groupId, 'SIGKILL'), STOP_TIMEOUT_MS);
        await exited;
        clearTimeout(timer);
      }
      // The wrapper may have been SIGKILLed alone; make sure nothing of the group survives.
      killGroup(groupId, 'SIGKILL');
      running.delete(groupId);
    };
    try {
      return { pid: await waitUntilReady(wrapper, port), end };
    } catch (err) {
      if (wrapper.pid !== undefined) killGroup(wrapper.pid, 'SIGKILL');
      await exited;
      if (wrapper.pid !== undefined) running.delete(wrapper.pid);
      throw err;
    }
  };

  let current: Awaited<ReturnType<typeof run>>;
  try {
    current = await run();
  } catch (err) {
    rmSync(storeDir, { recursive: true, force: true });
    throw err;
  }
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      await current.end();
      rmSync(storeDir, { recursive: true, force: true });
    })());
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    get pid() {
      return current.pid;
    },
    storeDir,
    stop,
    restart: async () => {
      if (stopping) throw new Error('nats-server was stopped; it cannot restart');
      await current.end();
      // The port was ours a moment ago; another process may take it in between, so retry briefly.
      for (let attempt = 1; ; attempt++) {
        try {
          current = await run();
          return;
        } catch (err) {
          if (!(err instanceof PortInUseError) || attempt >= PORT_ATTEMPTS * 3) throw err;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    },
  };
}

/** Reads stderr until "Server is ready"; keeps draining it afterwards so the server never blocks on logging. */
function waitUntilReady(wrapper: ChildProcess, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const tail: string[] = [];
    let buffered = '';
    let settled = false;
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(err);
    };
    const describe = (what: string) =>
      `nats-server on port ${port} ${what}. stderr tail:\n${[...tail, buffered].join('\n').trim()}`;
    const timer = setTimeout(
      () => fail(new Error(describe(`not ready within ${READY_TIMEOUT_MS} ms`))),
      READY_TIMEOUT_MS,
    );

    wrapper.stderr!.setEncoding('utf8');
    wrapper.stderr!.on('data', (chunk: string) => {
      if (settled) return; // drained and dropped once ready
      buffered += chunk;
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        tail.push(line);
        if (tail.length > 40) tail.shift();
        if (line.includes('Server is ready')) {
          settled = true;
          clearTimeout(timer);
          // Log lines start with "[PID]"; the server is the wrapper's only child.
          const logged = /^\[(\d+)\]/.exec(tail[0] ?? '')?.[1];
          resolve(logged ? Number(logged) : wrapper.pid!);
          return;
        }
      }
    });
    wrapper.once('error', (err) => fail(new Error(describe(`failed to spawn: ${err.message}`))));
    // 'close' (not 'exit') so all of stderr has been read when we look for the port error.
    wrapper.once('close', (code, signal) => {
      const text = [...tail, buffered].join('\n');
      const message = describe(`exited before ready (code ${code}, signal ${signal})`);
      fail(text.includes('address already in use') ? new PortInUseError(message) : new Error(message));
    });
  });
}

export interface NatsClusterOptions extends Omit<NatsServerOptions, 'jetstream'> {
  /** Servers in the cluster (default 3), each with JetStream and its own store. */
  nodes?: number;
}

export interface NatsClusterHandle {
  /** Every node's client URL, comma-separated: what NATS_URL holds for a cluster. */
  url: string;
  urls: string[];
  /** The nodes; `pid` of one is what a test kills (kill -9 = a server lost), then `restartNode` brings it back. */
  nodes: NatsServerHandle[];
  /** Starts node `i` again (same ports, same store) and waits until its JetStream is current. */
  restartNode(i: number): Promise<void>;
  /** Restarts every node in turn, each back and current before the next goes. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

const CLUSTER_READY_TIMEOUT_MS = 30_000;

/**
 * A JetStream cluster on loopback (default three nodes, cluster `va`, full mesh of routes): resolves once every
 * node reports itself healthy (`/healthz`: JetStream's meta group has a leader and the node is current).
 */
export async function startNatsCluster(opts: NatsClusterOptions = {}): Promise<NatsClusterHandle> {
  const { nodes: count = 3, ...serverOpts } = opts;
  const binary = findNatsServerBinary();
  installExitHook();
  // Ports picked up front (routes name every peer); a port taken meanwhile fails the start: tried again whole.
  for (let attempt = 1; ; attempt++) {
    const ports = await Promise.all(
      Array.from({ length: count }, async () => ({
        client: await freePort(),
        route: await freePort(),
        monitor: await freePort(),
      })),
    );
    const routes = ports.map((p) => `nats://127.0.0.1:${p.route}`).join(',');
    const started = await Promise.allSettled(
      ports.map((p, i) =>
        launch(binary, p.client, serverOpts, [
          '--server_name',
          `va-nats-${i + 1}`,
          '--cluster_name',
          'va',
          '--cluster',
          `nats://127.0.0.1:${p.route}`,
          '--routes',
          routes,
          '-m',
          String(p.monitor),
        ]),
      ),
    );
    const nodes = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      await Promise.all(nodes.map((n) => n.stop()));
      if (failed.reason instanceof PortInUseError && attempt < PORT_ATTEMPTS) continue;
      throw failed.reason;
    }
    const healthy = (i: number) => waitHealthy(ports[i]!.monitor);
    try {
      await Promise.all(nodes.map((_, i) => healthy(i)));
    } catch (err) {
      await Promise.all(nodes.map((n) => n.stop()));
      throw err;
    }
    const urls = nodes.map((n) => n.url);
    const restartNode = async (i: number) => {
      await nodes[i]!.restart();
      await healthy(i);
    };
    return {
      url: urls.join(','),
      urls,
      nodes,
      restartNode,
      restart: async () => {
        for (let i = 0; i < nodes.length; i++) await restartNode(i);
      },
      stop: async () => void (await Promise.all(nodes.map((n) => n.stop()))),
    };
  }
}

/** Polls a node's monitoring `/healthz` until it answers 200 (JetStream ready and current on that node). */
async function waitHealthy(monitorPort: number): Promise<void> {
  const deadline = Date.now() + CLUSTER_READY_TIMEOUT_MS;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`http://127.0.0.1:${monitorPort}/healthz`, { signal: AbortSignal.timeout(1000) });
      last = `${res.status} ${await res.text()}`;
      if (res.ok) return;
    } catch (err) {
      last = String(err);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(
    `nats-server (monitor port ${monitorPort}) not healthy within ${CLUSTER_READY_TIMEOUT_MS} ms: ${last}`,
  );
}
