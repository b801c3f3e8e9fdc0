import { spawnNode, type ChildExit, type ChildHandle } from '@va/testkit';
import { serviceEntry, type Pipeline } from './pipeline.js';

export interface GatewayProcessOptions {
  /** The gateway is killed after this long, whatever happens to this process (default 900 s). */
  maxLifetimeSec?: number;
  /** Extra environment for the gateway (e.g. `GATEWAY_TRACE_URL`). */
  env?: Record<string, string>;
}

export interface WebGatewayOptions extends GatewayProcessOptions {
  host?: string;
  /** 0: any free port. */
  port?: number;
}

export interface LiveKitGatewayOptions extends GatewayProcessOptions {
  /** `LIVEKIT_URL`, `LIVEKIT_API_KEY`, `LIVEKIT_API_SECRET` (from the user's environment). */
  liveKit: Record<'LIVEKIT_URL' | 'LIVEKIT_API_KEY' | 'LIVEKIT_API_SECRET', string>;
  /** Rooms to join at start (kept joined). */
  rooms: string[];
  /** The dispatch endpoint's port (0: any free port). */
  port?: number;
  /** Serve `GET /token` (client tokens) on the dispatch endpoint, which listens on 127.0.0.1. */
  tokenEndpoint?: boolean;
}

export interface RunningGateway {
  /** The talk page (web) or the dispatch endpoint (livekit), e.g. `http://127.0.0.1:8080`. */
  url: string;
  child: ChildHandle;
  /** SIGTERM: open sessions close, then the process exits. */
  stop(): Promise<ChildExit>;
}

/** The media gateway with its web transport (the talk page), on a running pipeline's bus. */
export function startWebGateway(pipeline: Pipeline, opts: WebGatewayOptions = {}): Promise<RunningGateway> {
  return startGatewayProcess(
    pipeline,
    {
      GATEWAY_TRANSPORT: 'web',
      GATEWAY_WEB_HOST: opts.host ?? '127.0.0.1',
      GATEWAY_WEB_PORT: String(opts.port ?? 0),
      // Every client of a harness gateway is this machine (one address): the per-client limits would be the
      // page's. The session cap and every other limit stay as shipped.
      GATEWAY_WEB_MAX_SESSIONS_PER_CLIENT: '1000',
      GATEWAY_WEB_CONNECTS_PER_MINUTE: '60000',
      ...opts.env,
    },
    'talk page ready',
    opts.maxLifetimeSec,
  );
}

/** The media gateway in LiveKit rooms (a LiveKit server or LiveKit Cloud), on a running pipeline's bus. */
export function startLiveKitGateway(pipeline: Pipeline, opts: LiveKitGatewayOptions): Promise<RunningGateway> {
  return startGatewayProcess(
    pipeline,
    {
      ...opts.liveKit,
      GATEWAY_TRANSPORT: 'livekit',
      GATEWAY_HTTP_HOST: '127.0.0.1',
      GATEWAY_HTTP_PORT: String(opts.port ?? 0),
      LIVEKIT_ROOMS: opts.rooms.join(','),
      GATEWAY_TOKEN_ENDPOINT: opts.tokenEndpoint ? '1' : '0',
      ...opts.env,
    },
    'dispatch endpoint ready',
    opts.maxLifetimeSec,
  );
}

async function startGatewayProcess(
  pipeline: Pipeline,
  env: Record<string, string>,
  readyMsg: string,
  maxLifetimeSec = 900,
): Promise<RunningGateway> {
  const child = spawnNode(serviceEntry('media-gateway'), {
    env: { ...pipeline.env, ...env },
    name: 'media-gateway',
    maxLifetimeSec,
  });
  try {
    const ready = await Promise.race([
      child.waitForJson<{ url: string }>((l) => l.msg === readyMsg, 30_000),
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
