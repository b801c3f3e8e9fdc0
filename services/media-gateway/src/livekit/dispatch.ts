import { randomBytes } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { DispatchError } from './dispatch-request.js';
import {
  LiveKitRoom,
  LiveKitTransport,
  type LiveKitTransportOptions,
  type RoomLike,
  type SessionFactory,
  type TransportLog,
} from './room.js';
import { agentIdentity, agentToken, type LiveKitConfig } from './token.js';

export { ClientIdentity, DispatchError, DispatchRequest, RoomName, type DispatchFailure } from './dispatch-request.js';

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
  async leave(room: string, handOver = false): Promise<boolean> {
    const kept = this.kept.get(room);
    kept?.stop.abort();
    this.kept.delete(room);
    const entry = this.rooms.get(room);
    if (!entry) return kept !== undefined;
    entry.leaving ??= entry.ready
      .then(
        () => entry.transport.stop(handOver),
        noop, // a failed join has cleaned up already
      )
      .catch((err: unknown) => this.log.warn({ room, err: String(err) }, 'leaving room failed'))
      .finally(() => {
        if (this.rooms.get(room) === entry) this.rooms.delete(room);
      });
    await entry.leaving;
    return true;
  }

  /**
   * Refuses new joins, stops every retry and leaves every room. `handOver` (SIGTERM): the rooms' sessions are left
   * to be resumed by the instance that takes each room over.
   */
  async stop(handOver = false): Promise<void> {
    this.stopping = true;
    for (const kept of this.kept.values()) kept.stop.abort();
    this.kept.clear();
    await Promise.all([...this.rooms.keys()].map((room) => this.leave(room, handOver)));
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
