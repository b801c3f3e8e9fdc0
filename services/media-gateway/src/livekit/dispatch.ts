import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { createLimitedServer, isLoopback, sameOrigin, type HttpLimits } from '../http-limits.js';
import { z } from 'zod';
import {
  LiveKitRoom,
  LiveKitTransport,
  type LiveKitTransportOptions,
  type RoomLike,
  type SessionFactory,
  type TransportLog,
} from './room.js';
import { agentIdentity, agentToken, clientToken, type LiveKitConfig } from './token.js';

/**
 * A LiveKit room name as the dispatcher accepts it: 1–128 of A–Z a–z 0–9 `_` `-` `.`, starting with a letter or
 * digit. Nothing else: no NATS wildcards, no white space or control characters, no bidi overrides or zero-width
 * characters that make a name look like another when it is echoed back.
 */
export const RoomName = z
  .string({ error: 'room is required (a string)' })
  .min(1, 'room may not be empty')
  .max(128, 'room may be at most 128 characters long')
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'room may only contain A-Z a-z 0-9 _ - . and start with a letter or digit');

/** A user's identity for a client token: as a room name, plus `@` and `:`, and not the agents' `agent-` prefix. */
export const ClientIdentity = z
  .string({ error: 'identity is required (a string)' })
  .min(1, 'identity may not be empty')
  .max(128, 'identity may be at most 128 characters long')
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9_.@:-]*$/,
    'identity may only contain A-Z a-z 0-9 _ - . @ : and start with a letter or digit',
  )
  .refine((s) => !s.startsWith('agent-'), 'identity may not start with "agent-" (reserved for agents)');

const DispatchRequest = z.object({ room: RoomName });

/** Why a join was refused; the HTTP layer maps each reason to a status. */
export type DispatchFailure = 'join-failed' | 'at-capacity' | 'stopping';

/** A join that did not happen. Its message never holds the API secret or a token. */
export class DispatchError extends Error {
  constructor(
    readonly reason: DispatchFailure,
    message: string,
  ) {
    super(message);
    this.name = 'DispatchError';
  }
}

export interface LiveKitDispatcherOptions {
  config: LiveKitConfig;
  openSession: SessionFactory;
  /** The agent is `agent-<agentId>` in every room (default: random per dispatcher). */
  agentId?: string;
  /** Default: a real `@livekit/rtc-node` room. */
  newRoom?: (name: string) => RoomLike;
  /** Rooms served at once; more joins are refused. */
  maxRooms?: number;
  /** A connect that takes longer fails (rtc-node's own connect has no overall deadline). */
  joinTimeoutMs?: number;
  /** Passed to each room's transport (tests: a fake clock or audio source). */
  transport?: Pick<LiveKitTransportOptions, 'clock' | 'newSource' | 'maxMicFrames'>;
  /** `keepJoined`: the wait before the first retry, doubled per failure up to `maxMs` (default 1 s, 30 s). */
  retry?: { firstMs?: number; maxMs?: number };
  /** Waits `ms`, or until `signal` aborts (default: a timer; tests: a faster one). */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  log?: TransportLog;
}

export interface DispatchedRoom {
  room: string;
  /** The agent's identity in the room. */
  identity: string;
  state: 'joining' | 'joined' | 'leaving';
  /** Participants with a session now. */
  participants: string[];
}

interface RoomEntry {
  room: RoomLike;
  transport: LiveKitTransport;
  joined: boolean;
  ready: Promise<void>;
  leaving?: Promise<void>;
  /** Why LiveKit put the agent out of the room (set once it did). */
  lost?: string;
}

/** A room the agent is meant to stay in (`keepJoined`). */
interface KeptRoom {
  /** Aborted when the room is left through the API, or on `stop()`. */
  stop: AbortController;
  /** The wait before the next attempt. */
  delayMs: number;
  /** When the last join succeeded: a loss soon after does not reset the backoff. */
  joinedAt?: number;
  /** The retry loop running now (an older one hands over to it); `loop` counts them. */
  current?: Promise<boolean>;
  loop: number;
}

const noop = () => {};

const sleepFor = (ms: number, signal: AbortSignal): Promise<void> => delay(ms, undefined, { signal }).catch(noop);

/**
 * The rooms the agent is in: one `LiveKitTransport` (one session per participant) per room. Joins are
 * idempotent (a second join of a room being joined or joined waits for the first); `stop()` leaves them all.
 */
export class LiveKitDispatcher {
  readonly identity: string;
  readonly config: LiveKitConfig;
  private readonly rooms = new Map<string, RoomEntry>();
  private readonly newRoom: (name: string) => RoomLike;
  private readonly maxRooms: number;
  private readonly joinTimeoutMs: number;
  private readonly log: TransportLog;
  private readonly agentId: string;
  private readonly kept = new Map<string, KeptRoom>();
  private readonly retryFirstMs: number;
  private readonly retryMaxMs: number;
  private readonly sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  private stopping = false;

  constructor(private readonly opts: LiveKitDispatcherOptions) {
    this.config = opts.config;
    this.agentId = opts.agentId ?? randomBytes(4).toString('hex');
    this.identity = agentIdentity(this.agentId);
    this.newRoom = opts.newRoom ?? ((name) => new LiveKitRoom(name));
    this.maxRooms = opts.maxRooms ?? 32;
    this.joinTimeoutMs = opts.joinTimeoutMs ?? 15_000;
    this.log = opts.log ?? { info: noop, warn: noop, error: noop };
    this.retryFirstMs = opts.retry?.firstMs ?? 1000;
    this.retryMaxMs = Math.max(opts.retry?.maxMs ?? 30_000, this.retryFirstMs);
    this.sleep = opts.sleep ?? sleepFor;
  }

  /** Joins `room` (no-op when already in it); rejects with a `DispatchError`. */
  join(room: string): Promise<void> {
    return this.joinRoom(room);
  }

  /** `join`; once `signal` aborts, a join that waits for an earlier leave gives up (resolves) instead. */
  private async joinRoom(room: string, signal?: AbortSignal): Promise<void> {
    if (this.stopping) throw new DispatchError('stopping', 'the gateway is shutting down');
    const existing = this.rooms.get(room);
    if (existing?.leaving) {
      await existing.leaving;
      if (signal?.aborted) return;
      return this.joinRoom(room, signal);
    }
    if (existing) return existing.ready;
    if (this.rooms.size >= this.maxRooms) {
      throw new DispatchError('at-capacity', `the gateway is at its limit of ${this.maxRooms} rooms`);
    }
    const roomLike = this.newRoom(room);
    const transport = new LiveKitTransport({
      ...this.opts.transport,
      room: roomLike,
      openSession: this.opts.openSession,
      log: this.log,
      onLost: (reason) => this.roomLost(room, entry, reason),
    });
    const entry: RoomEntry = { room: roomLike, transport, joined: false, ready: Promise.resolve() };
    entry.ready = this.connect(room, entry);
    this.rooms.set(room, entry);
    return entry.ready;
  }

  private async connect(room: string, entry: RoomEntry): Promise<void> {
    let token = '';
    let started: Promise<void> | undefined;
    let timer: NodeJS.Timeout | undefined;
    let timedOut = false;
    try {
      token = await agentToken(this.config, room, this.agentId);
      started = entry.transport.start(this.config.url, token);
      await Promise.race([
        started,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            timedOut = true;
            reject(new Error(`no connection after ${this.joinTimeoutMs} ms`));
          }, this.joinTimeoutMs);
        }),
      ]);
      if (entry.lost !== undefined) throw new Error(`the room was lost while joining (${entry.lost})`);
      entry.joined = true;
      this.log.info({ room, identity: this.identity }, 'agent dispatched to room');
    } catch (err) {
      if (this.rooms.get(room) === entry) this.rooms.delete(room);
      // A connect that completes after the timeout must not leave the agent behind in the room.
      const cleanup = (started ?? Promise.resolve())
        .then(
          () => entry.transport.stop(),
          () => entry.room.disconnect(),
        )
        .catch(noop);
      if (!timedOut) await cleanup;
      const why = redact(err instanceof Error ? err.message : String(err), [this.config.apiSecret, token]);
      this.log.error({ room, err: why }, 'agent could not join room');
      throw new DispatchError('join-failed', `could not join LiveKit room "${room}": ${why}`);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * The room put the agent out (see `RoomEvents.disconnected`): its sessions close and its entry goes, so a
   * later join joins afresh (a join meanwhile waits for that); a kept room is joined again.
   */
  private roomLost(room: string, entry: RoomEntry, reason: string): void {
    if (this.rooms.get(room) !== entry || entry.leaving) return;
    entry.lost = reason;
    const kept = this.stopping ? undefined : this.kept.get(room);
    this.log.warn(
      { room, identity: this.identity, reason },
      kept ? 'agent lost LiveKit room; joining it again' : 'agent lost LiveKit room; dispatch it again to rejoin',
    );
    entry.leaving = entry.transport
      .stop()
      .catch((err: unknown) => this.log.warn({ room, err: String(err) }, 'closing the lost room failed'))
      .finally(() => {
        if (this.rooms.get(room) === entry) this.rooms.delete(room);
      });
    if (kept) {
      // Lost soon after joining (say, to a flapping server): keep backing off; else start over.
      if (kept.joinedAt === undefined || Date.now() - kept.joinedAt >= this.retryMaxMs) {
        kept.delayMs = this.retryFirstMs;
      }
      void this.keep(room, kept, true);
    }
  }

  /**
   * Joins `room` and keeps the agent there: a failed join is tried again after `retry.firstMs`, doubling up
   * to `retry.maxMs` apart, for as long as it takes; a room lost later is joined again the same way. Ends
   * with `leave(room)` or `stop()`. Resolves true once joined, false when that ended it first.
   */
  keepJoined(room: string): Promise<boolean> {
    if (this.stopping) return Promise.resolve(false);
    let kept = this.kept.get(room);
    if (!kept) {
      kept = { stop: new AbortController(), delayMs: this.retryFirstMs, loop: 0 };
      this.kept.set(room, kept);
    }
    return this.keep(room, kept, false);
  }

  private keep(room: string, kept: KeptRoom, waitFirst: boolean): Promise<boolean> {
    const loop = ++kept.loop;
    const signal = kept.stop.signal;
    const run = async (): Promise<boolean> => {
      for (let attempt = 1; ; attempt++) {
        if (attempt > 1 || waitFirst) {
          await this.sleep(kept.delayMs, signal);
          kept.delayMs = Math.min(kept.delayMs * 2, this.retryMaxMs);
        }
        if (kept.loop !== loop) return kept.current!;
        if (signal.aborted || this.stopping) return false;
        try {
          await this.joinRoom(room, signal);
        } catch (err) {
          if (kept.loop !== loop) return kept.current!;
          if (signal.aborted || this.stopping) return false;
          const why = err instanceof Error ? err.message : String(err);
          this.log.warn({ room, attempt, retryInMs: kept.delayMs, err: why }, 'could not join room; retrying');
          continue;
        }
        if (kept.loop !== loop) return kept.current!;
        if (signal.aborted) return false; // left through the API meanwhile
        kept.joinedAt = Date.now();
        return true;
      }
    };
    kept.current = run();
    return kept.current;
  }

  /**
   * Leaves `room`, closing its sessions, and stops keeping it joined; false when the agent was neither in it
   * nor trying to join it again.
   */
  async leave(room: string): Promise<boolean> {
    const kept = this.kept.get(room);
    kept?.stop.abort();
    this.kept.delete(room);
    const entry = this.rooms.get(room);
    if (!entry) return kept !== undefined;
    entry.leaving ??= entry.ready
      .then(
        () => entry.transport.stop(),
        noop, // a failed join has cleaned up already
      )
      .catch((err: unknown) => this.log.warn({ room, err: String(err) }, 'leaving room failed'))
      .finally(() => {
        if (this.rooms.get(room) === entry) this.rooms.delete(room);
      });
    await entry.leaving;
    return true;
  }

  /** Refuses new joins, stops every retry and leaves every room. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const kept of this.kept.values()) kept.stop.abort();
    this.kept.clear();
    await Promise.all([...this.rooms.keys()].map((room) => this.leave(room)));
  }

  list(): DispatchedRoom[] {
    return [...this.rooms].map(([room, e]) => ({
      room,
      identity: this.identity,
      state: e.leaving ? 'leaving' : e.joined ? 'joined' : 'joining',
      participants: e.transport.identities,
    }));
  }

  has(room: string): boolean {
    return this.rooms.has(room);
  }
}

/** Cuts credentials out of an error message (the SDK may echo a URL or token), and bounds its length. */
function redact(message: string, secrets: string[]): string {
  let out = message;
  for (const s of secrets) if (s) out = out.split(s).join('[redacted]');
  return out.length > 300 ? `${out.slice(0, 300)}…` : out;
}

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
  const http = createLimitedServer(opts.httpLimits ?? {}, (req, res) => {
    route(req, res).catch((err: unknown) => {
      log?.error({ err: String(err) }, 'dispatch request failed');
      if (!res.headersSent) json(res, 500, { error: 'internal error' });
      else res.destroy();
    });
  });

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
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
    if (secretDigest && !authorized(req.headers.authorization, secretDigest)) {
      res.setHeader('www-authenticate', 'Bearer');
      return json(res, 401, { error: 'missing or wrong bearer token (Authorization: Bearer <secret>)' });
    }
    if (path === '/dispatch') {
      if (method === 'GET') return json(res, 200, { rooms: dispatcher.list() });
      if (method === 'POST') return serveDispatch(req, res);
      return notAllowed(res, 'GET, POST');
    }
    if (path.startsWith('/dispatch/')) {
      if (method !== 'DELETE') return notAllowed(res, 'DELETE');
      return serveLeave(path.slice('/dispatch/'.length), res);
    }
    if (path === '/token' && opts.tokenEndpoint) {
      if (method !== 'GET') return notAllowed(res, 'GET');
      return serveClientToken(url.searchParams, res);
    }
    json(res, 404, { error: 'not found' });
  }

  async function serveDispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // JSON only: a form or `text/plain` body is what a cross-site page can send without a preflight.
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (type !== 'application/json') {
      res.setHeader('accept-post', 'application/json');
      return json(res, 415, { error: 'the body must be application/json: {"room": "<room name>"}' });
    }
    const body = await readBody(req, maxBodyBytes);
    if (body === undefined) {
      res.setHeader('connection', 'close'); // the rest of the body is not worth reading
      return json(res, 413, { error: `request body over the limit of ${maxBodyBytes} bytes` });
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
    const busy = opts.busy?.();
    if (busy) {
      res.setHeader('retry-after', '5');
      return json(res, 503, { error: `busy, try again: ${busy.reason}`, stage: busy.stage });
    }
    try {
      await dispatcher.join(room);
    } catch (err) {
      if (!(err instanceof DispatchError)) throw err;
      const status = err.reason === 'join-failed' ? 502 : 503;
      return json(res, status, { error: err.message });
    }
    json(res, 200, { room, identity: dispatcher.identity });
  }

  async function serveLeave(encoded: string, res: ServerResponse): Promise<void> {
    let name: string;
    try {
      name = decodeURIComponent(encoded);
    } catch {
      return json(res, 400, { error: 'the room in the path is not valid percent-encoding' });
    }
    const room = RoomName.safeParse(name);
    if (!room.success) return json(res, 400, { error: issues(room.error) });
    if (!(await dispatcher.leave(room.data))) return json(res, 404, { error: `the agent is not in room "${name}"` });
    res.writeHead(204);
    res.end();
  }

  async function serveClientToken(params: URLSearchParams, res: ServerResponse): Promise<void> {
    const query = z
      .object({ room: RoomName, identity: ClientIdentity })
      .safeParse({ room: params.get('room') ?? undefined, identity: params.get('identity') ?? undefined });
    if (!query.success) return json(res, 400, { error: issues(query.error) });
    const jwt = await clientToken(dispatcher.config, query.data.room, query.data.identity);
    json(res, 200, { url: dispatcher.config.url, token: jwt });
  }

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
