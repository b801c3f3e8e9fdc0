import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '@va/telemetry';

/** What `/readyz` answers: ready or not, why not, and anything an operator wants to see. */
export interface Readiness {
  ready: boolean;
  /** Why not ready (e.g. `nats disconnected`, `draining`). */
  reason?: string;
  [detail: string]: unknown;
}

export interface HealthServerOptions {
  port: number;
  host?: string;
  stage: string;
  instanceId?: string;
  readiness: () => Readiness;
  log?: Logger;
}

export interface HealthServer {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

/**
 * Probes for orchestrators: `GET /healthz` is liveness (the event loop answers: restarting would not help
 * anything else), `GET /readyz` is readiness (503 while NATS is away or the instance drains, so traffic and
 * new sessions go elsewhere while it hands its sessions over).
 */
export async function startHealthServer(opts: HealthServerOptions): Promise<HealthServer> {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const path = url.pathname;
    const reply = (status: number, body: object) => {
      res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : JSON.stringify(body));
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(405, { error: 'method not allowed' });
    const who = { stage: opts.stage, ...(opts.instanceId ? { instanceId: opts.instanceId } : {}) };
    if (path === '/healthz') return reply(200, { status: 'ok', ...who });
    if (path === '/readyz') {
      // Leak hunting (`npm run soak`): with `--expose-gc` only, `?gc=1` collects first, so the heap figure in the
      // details is the live heap rather than a point somewhere on the collector's sawtooth.
      const collect = url.searchParams.get('gc') === '1' && typeof globalThis.gc === 'function';
      if (collect) globalThis.gc!();
      let r: Readiness;
      try {
        r = opts.readiness();
      } catch (err) {
        r = { ready: false, reason: `readiness check failed: ${String(err)}` };
      }
      return reply(r.ready ? 200 : 503, { ...who, ...r, ...(collect ? { collected: true } : {}) });
    }
    reply(404, { error: 'not found: /healthz and /readyz only' });
  });
  // A probe that never finishes its request must not hold a socket forever.
  server.requestTimeout = 5000;
  server.headersTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host ?? '0.0.0.0', () => resolve());
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const url = `http://${host}:${addr.port}`;
  opts.log?.info({ url }, 'health endpoint ready');
  return {
    url,
    port: addr.port,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
