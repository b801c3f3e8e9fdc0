import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, waitFor } from '@va/testkit';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
/** The shipped reverse-proxy config: the test runs it as written, with its upstreams and port put in. */
export const NGINX_CONF = join(ROOT, 'deploy/nginx/voice-agent.conf');

export interface ReverseProxy {
  /** The talk page through the proxy, e.g. `http://127.0.0.1:PORT`. */
  url: string;
  pid: number;
  stop(): Promise<void>;
}

/**
 * nginx (Debian's) in front of the gateways at `upstreams` (`host:port`), with deploy/nginx/voice-agent.conf as
 * its http block: its upstream servers and listen port replaced, everything else as shipped. Listens on 127.0.0.1;
 * stops itself after `maxLifetimeSec` whatever happens to this process.
 */
export async function startReverseProxy(upstreams: readonly string[], maxLifetimeSec = 600): Promise<ReverseProxy> {
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), 'va-nginx-'));
  const shipped = await readFile(NGINX_CONF, 'utf8');
  const servers = upstreams.map((u) => `  server ${u} max_fails=1 fail_timeout=10s;`).join('\n');
  const site = shipped
    .replace(/upstream media_gateway \{[^}]*\}/, `upstream media_gateway {\n${servers}\n}`)
    .replace(/listen \d+;/, `listen 127.0.0.1:${port};`);
  if (!site.includes(`listen 127.0.0.1:${port};`) || !site.includes(servers)) {
    throw new Error(`${NGINX_CONF}: no upstream media_gateway block or listen line to fill in`);
  }
  await writeFile(join(dir, 'site.conf'), site);
  const temp = (name: string) => `${name} ${join(dir, name.replace(/_path$/, ''))};`;
  await writeFile(
    join(dir, 'nginx.conf'),
    [
      'worker_processes 1;',
      'daemon off;',
      'master_process off;',
      `pid ${join(dir, 'nginx.pid')};`,
      `error_log ${join(dir, 'error.log')} warn;`,
      'events { worker_connections 256; }',
      'http {',
      '  access_log off;',
      ...['client_body_temp_path', 'proxy_temp_path', 'fastcgi_temp_path', 'uwsgi_temp_path', 'scgi_temp_path'].map(
        (n) => `  ${temp(n)}`,
      ),
      `  include ${join(dir, 'site.conf')};`,
      '}',
    ].join('\n'),
  );
  // coreutils `timeout` bounds its life even if this process dies without stopping it.
  const child = spawn(
    'timeout',
    ['--kill-after=5', String(maxLifetimeSec), '/usr/sbin/nginx', '-p', dir, '-c', join(dir, 'nginx.conf')],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitFor(
      async () => {
        if (child.exitCode !== null) throw new Error(`nginx exited (${child.exitCode}): ${stderr}`);
        return (await fetch(`${url}/healthz`).catch(() => undefined))?.ok;
      },
      { timeoutMs: 10_000, message: `nginx on ${url}` },
    );
  } catch (err) {
    child.kill('SIGKILL');
    await exited;
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    url,
    pid: child.pid!,
    stop: async () => {
      if (child.exitCode === null) {
        // `timeout` passes SIGTERM on to nginx (a fast shutdown).
        child.kill('SIGTERM');
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
