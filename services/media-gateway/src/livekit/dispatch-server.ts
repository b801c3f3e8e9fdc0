import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import { createLimitedServer, isLoopback, sameOrigin, type HttpLimits } from '../http-limits.js';
import { ClientIdentity, DispatchError, DispatchRequest, RoomName, type LiveKitDispatcher } from './dispatch.js';
import type { TransportLog } from './room.js';
import { clientToken } from './token.js';

export interface DispatchServerOptions {
  dispatcher: LiveKitDispatcher;
  host?: string;
  /** 0: any free port. */
  port?: number;
  /**
   * Serve `GET /token`: a client token for any room and identity. Anyone who can reach the port can then
   * join rooms (and talk to the agent), so enable it only behind `secret` or on a trusted network.
   */
  tokenEndpoint?: boolean;
  /**
   * When set, every route but `/healthz` needs `Authorization: Bearer <secret>`. Required when `host` is not a
   * loopback address: the server refuses to start without it.
   */
  secret?: string;
  /** Timeouts and the connection cap (defaults: HTTP_LIMITS_DEFAULTS). */
  httpLimits?: Partial<HttpLimits>;
  /** Larger request bodies are refused with 413. */
  maxBodyBytes?: number;
  log?: TransportLog;
  /**
   * Why the pipeline would refuse a new session now (some stage full), or undefined: while it says so,
   * `POST /dispatch` answers 503 naming the stage instead of sending the agent into a room it cannot serve.
   */
  busy?: () => { stage: string; reason: string } | undefined;
  /**
   * Which instance serves a room (`RoomLeases`): a dispatched room is leased to this instance first — one another
   * instance serves answers 409 — and taken over by another instance if this one dies; a room left is released.
   */
  leases?: { hold(room: string): Promise<boolean>; release(room: string): Promise<void> };
}

export interface DispatchServer {
  readonly url: string;
  readonly port: number;
  /** Stops the server, then leaves every room. */
  close(): Promise<void>;
}

/**
 * The dispatch entry point: `POST /dispatch {"room"}` sends the agent into a room, `DELETE /dispatch/<room>`
 * takes it out, `GET /dispatch` lists rooms and participants, `GET /token` (opt-in) mints client tokens,
 * `GET /healthz` answers ok. Errors are JSON `{ "error": "..." }`.
 */
export async function startDispatchServer(opts: DispatchServerOptions): Promise<DispatchServer> {
  const { dispatcher } = opts;
  const maxBodyBytes = opts.maxBodyBytes ?? 16 * 1024;
  const secretDigest = opts.secret ? digest(opts.secret) : undefined;
  const log = opts.log;
  const host = opts.host ?? '127.0.0.1';
  if (!opts.secret && !isLoopback(host)) {
    throw new Error(
      `the dispatch endpoint listens on ${host}, beyond loopback: it needs a secret (GATEWAY_DISPATCH_SECRET), ` +
        'or anyone who reaches the port can send the agent into rooms',
    );
  }

  // A client that sends its request slowly is cut off (the time to answer, e.g. a join, is not counted).
  const routes = new DispatchRoutes(opts, dispatcher, maxBodyBytes, secretDigest);
  const http = createLimitedServer(opts.httpLimits ?? {}, (req, res) => {
    routes.route(req, res).catch((err: unknown) => {
      log?.error({ err: String(err) }, 'dispatch request failed');
      if (!res.headersSent) json(res, 500, { error: 'internal error' });
      else res.destroy();
    });
  });

  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(opts.port ?? 0, host, () => resolve());
  });
  const addr = http.address() as AddressInfo;
  const listening = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;

  let closing: Promise<void> | undefined;
  return {
    url: `http://${listening}:${addr.port}`,
    port: addr.port,
    close() {
      closing ??= (async () => {
        const closed = new Promise<void>((resolve) => http.close(() => resolve()));
        http.closeAllConnections();
        await closed;
        await dispatcher.stop();
      })();
      return closing;
    },
  };
}

/** The endpoint's routes (see startDispatchServer). */
class DispatchRoutes {
  constructor(
    private readonly opts: DispatchServerOptions,
    private readonly dispatcher: LiveKitDispatcher,
    private readonly maxBodyBytes: number,
    private readonly secretDigest: Buffer | undefined,
  ) {}

  async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const path = url.pathname;
    const method = req.method ?? 'GET';
    if (path === '/healthz') {
      if (method !== 'GET' && method !== 'HEAD') return notAllowed(res, 'GET, HEAD');
      res.writeHead(200, { 'content-type': 'text/plain' });
      return void res.end(method === 'HEAD' ? undefined : 'ok\n');
    }
    // A page on another site must not drive the endpoint through a visitor's browser (CSRF): a browser always
    // sends Origin on a cross-site POST or DELETE, and only a same-origin one may go on.
    if (method !== 'GET' && method !== 'HEAD' && !sameOrigin(req)) {
      return json(res, 403, { error: 'cross-site requests are refused' });
    }
    if (this.secretDigest && !authorized(req.headers.authorization, this.secretDigest)) {
      res.setHeader('www-authenticate', 'Bearer');
      return json(res, 401, { error: 'missing or wrong bearer token (Authorization: Bearer <secret>)' });
    }
    if (path === '/dispatch') {
      if (method === 'GET') return json(res, 200, { rooms: this.dispatcher.list() });
      if (method === 'POST') return this.serveDispatch(req, res);
      return notAllowed(res, 'GET, POST');
    }
    if (path.startsWith('/dispatch/')) {
      if (method !== 'DELETE') return notAllowed(res, 'DELETE');
      return this.serveLeave(path.slice('/dispatch/'.length), res);
    }
    if (path === '/token' && this.opts.tokenEndpoint) {
      if (method !== 'GET') return notAllowed(res, 'GET');
      return this.serveClientToken(url.searchParams, res);
    }
    json(res, 404, { error: 'not found' });
  }

  private async serveDispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // JSON only: a form or `text/plain` body is what a cross-site page can send without a preflight.
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (type !== 'application/json') {
      res.setHeader('accept-post', 'application/json');
      return json(res, 415, { error: 'the body must be application/json: {"room": "<room name>"}' });
    }
    const body = await readBody(req, this.maxBodyBytes);
    if (body === undefined) {
      res.setHeader('connection', 'close'); // the rest of the body is not worth reading
      return json(res, 413, { error: `request body over the limit of ${this.maxBodyBytes} bytes` });
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      return json(res, 400, { error: 'the body must be JSON: {"room": "<room name>"}' });
    }
    const request = DispatchRequest.safeParse(parsed);
    if (!request.success) return json(res, 400, { error: issues(request.error) });
    const { room } = request.data;
    const busy = this.opts.busy?.();
    if (busy) {
      res.setHeader('retry-after', '5');
      return json(res, 503, { error: `busy, try again: ${busy.reason}`, stage: busy.stage });
    }
    const { leases } = this.opts;
    if (leases && !(await leases.hold(room))) {
      return json(res, 409, { error: `room "${room}" is served by another gateway instance` });
    }
    try {
      await this.dispatcher.join(room);
    } catch (err) {
      await leases?.release(room);
      if (!(err instanceof DispatchError)) throw err;
      const status = err.reason === 'join-failed' ? 502 : 503;
      return json(res, status, { error: err.message });
    }
    json(res, 200, { room, identity: this.dispatcher.identity });
  }

  private async serveLeave(encoded: string, res: ServerResponse): Promise<void> {
    let name: string;
    try {
      name = decodeURIComponent(encoded);
    } catch {
      return json(res, 400, { error: 'the room in the path is not valid percent-encoding' });
    }
    const room = RoomName.safeParse(name);
    if (!room.success) return json(res, 400, { error: issues(room.error) });
    const left = await this.dispatcher.leave(room.data);
    await this.opts.leases?.release(room.data);
    if (!left) return json(res, 404, { error: `the agent is not in room "${name}"` });
    res.writeHead(204);
    res.end();
  }

  private async serveClientToken(params: URLSearchParams, res: ServerResponse): Promise<void> {
    const query = z
      .object({ room: RoomName, identity: ClientIdentity })
      .safeParse({ room: params.get('room') ?? undefined, identity: params.get('identity') ?? undefined });
    if (!query.success) return json(res, 400, { error: issues(query.error) });
    const jwt = await clientToken(this.dispatcher.config, query.data.room, query.data.identity);
    json(res, 200, { url: this.dispatcher.config.url, token: jwt });
  }
}

/** The body, or undefined when it is over `limit` bytes (reading stops there). */
async function readBody(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return undefined;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** Hashing first gives both sides one length, as `timingSafeEqual` needs, without leaking the secret's. */
function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

function authorized(header: string | undefined, secretDigest: Buffer): boolean {
  const match = /^Bearer +(\S+)\s*$/i.exec(header ?? '');
  return match !== null && timingSafeEqual(digest(match[1]!), secretDigest);
}

function issues(error: z.ZodError): string {
  return error.issues.map((i) => i.message).join('; ');
}

function json(res: ServerResponse, status: number, body: object): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

function notAllowed(res: ServerResponse, allow: string): void {
  res.setHeader('allow', allow);
  json(res, 405, { error: `method not allowed; use ${allow}` });
}
