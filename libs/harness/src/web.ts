import { spawnNode, type ChildExit, type ChildHandle } from '@va/testkit';
import { serviceEntry, type Pipeline } from './pipeline.js';

export interface WebGatewayOptions {
  host?: string;
  /** 0: any free port. */
  port?: number;
  /** The gateway is killed after this long, whatever happens to this process (default 900 s). */
  maxLifetimeSec?: number;
  /** Extra environment for the gateway (e.g. `GATEWAY_TRACE_URL`). */
  env?: Record<string, string>;
}

export interface WebGateway {
  /** The talk page, e.g. `http://127.0.0.1:8080`. */
  url: string;
  child: ChildHandle;
  /** SIGTERM: open sessions close, then the process exits. */
  stop(): Promise<ChildExit>;
}

/** The media gateway with its web transport (the talk page), on a running pipeline's bus. */
export async function startWebGateway(pipeline: Pipeline, opts: WebGatewayOptions = {}): Promise<WebGateway> {
  const child = spawnNode(serviceEntry('media-gateway'), {
    env: {
      ...pipeline.env,
      GATEWAY_TRANSPORT: 'web',
      GATEWAY_WEB_HOST: opts.host ?? '127.0.0.1',
      GATEWAY_WEB_PORT: String(opts.port ?? 0),
      ...opts.env,
    },
    name: 'media-gateway',
    maxLifetimeSec: opts.maxLifetimeSec ?? 900,
  });
  try {
    const ready = await Promise.race([
      child.waitForJson<{ url: string }>((l) => l.msg === 'talk page ready', 30_000),
      child.exited.then((e) => {
        throw new Error(`media-gateway exited with ${JSON.stringify(e)}:\n${child.stderr.slice(-20).join('\n')}`);
      }),
    ]);
    return { url: ready.url.replace(/\/$/, ''), child, stop: () => child.stop(10_000) };
  } catch (err) {
    await child.stop(5000);
    throw err;
  }
}
