import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { KV, KvWatchEntry } from '@nats-io/kv';
import { Svcm, type Service } from '@nats-io/services';
import {
  BUCKETS,
  channels,
  INSTANCE_KEY_TTL_MS,
  isInbox,
  leaseKey,
  SessionConfig,
  SessionId,
  subjects,
  type SessionOpenAck,
} from '@va/protocol';
import type { Bus, BusSubscription } from '@va/bus';
import { ATTR, counter, METRIC, upDownCounter, type Logger } from '@va/telemetry';
import { z } from 'zod';
import { ActorContext, type StopReason } from './context.js';
import { safeJson } from './json.js';
import type { LoadMonitor } from './load.js';

/** Per-session behaviour of a stage. Everything it needs comes through its context. */
export interface SessionActor {
  /** Called when the session ends here; the context's signals have already fired. */
  stop?(reason: StopReason): void | Promise<void>;
}

export type ActorFactory = (ctx: ActorContext) => SessionActor | Promise<SessionActor>;

export interface ActorHostOptions {
  stage: string;
  bus: Bus;
  createActor: ActorFactory;
  /** Sessions this instance will hold; at capacity it leaves the session.open queue group. */
  capacity?: number;
  /** How often this instance proves it is alive. */
  heartbeatMs?: number;
  /** Silence after which an instance is taken for dead and its sessions are re-claimed. */
  leaseMs?: number;
  /** How long a graceful handover waits for a turn in flight. */
  handoverTimeoutMs?: number;
  instanceId?: string;
  version?: string;
  logger?: Logger;
  /**
   * This process's load: while it is over its limits the instance claims no new session (it leaves the
   * session.open queue group), as at capacity. Sessions it holds, and those of dead peers, are still served.
   */
  load?: LoadMonitor;
}

/** Defaults: a killed instance's sessions are owned again within about leaseMs + heartbeatMs. */
export const ACTOR_HOST_DEFAULTS = {
  capacity: 100,
  heartbeatMs: 500,
  leaseMs: 1500,
  handoverTimeoutMs: 10_000,
  version: '0.1.0',
} as const satisfies Partial<ActorHostOptions>;

const Lease = z.object({ owner: z.string().nullable(), config: SessionConfig });
type Lease = z.infer<typeof Lease>;

export interface ClaimEvent {
  sessionId: SessionId;
  reclaimed: boolean;
}
export interface ReleaseEvent {
  sessionId: SessionId;
  reason: StopReason;
}

/** A unique, subject-safe id for this process. */
export function newInstanceId(): string {
  const host = hostname()
    .replace(/[^A-Za-z0-9_-]/g, '-')
    .slice(0, 32);
  return `${host}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

/**
 * Hosts the session actors of one stage in this process: claims sessions from the stage's queue group,
 * records ownership as a KV lease, proves liveness with heartbeats, re-claims sessions of dead peers, and
 * hands its own sessions over on drain.
 */
export class ActorHost extends EventEmitter<{ claimed: [ClaimEvent]; released: [ReleaseEvent] }> {
  readonly instanceId: string;
  readonly stage: string;
  private readonly opts: Required<Omit<ActorHostOptions, 'logger' | 'instanceId' | 'load'>>;
  private readonly load: LoadMonitor | undefined;
  private readonly log: Logger;
  private readonly bus: Bus;
  private readonly actors = new Map<SessionId, { ctx: ActorContext; actor: SessionActor | undefined }>();
  /** Every lease of this stage, as last seen in KV (kept current by a watch). */
  private readonly leases = new Map<SessionId, { lease: Lease; revision: number }>();
  /** Local time each peer's heartbeat was last seen (local clock only: immune to skew between hosts). */
  private readonly lastSeen = new Map<string, number>();
  private readonly departed = new Set<string>();
  private readonly claiming = new Set<SessionId>();
  private leasesKv!: KV;
  private instancesKv!: KV;
  private stateKv!: KV;
  private openSub: BusSubscription | undefined;
  private readonly subs: BusSubscription[] = [];
  private readonly watches: { stop(): void }[] = [];
  private timers: NodeJS.Timeout[] = [];
  private service: Service | undefined;
  private startedAt = 0;
  private draining = false;

  constructor(options: ActorHostOptions) {
    super();
    this.opts = { ...ACTOR_HOST_DEFAULTS, ...stripUndefined(options) } as typeof this.opts;
    this.stage = options.stage;
    this.bus = options.bus;
    this.instanceId = options.instanceId ?? newInstanceId();
    this.log = (options.logger ?? options.bus.log).child({ instanceId: this.instanceId });
    this.load = options.load;
  }

  get sessionIds(): SessionId[] {
    return [...this.actors.keys()];
  }

  /** What a readiness probe reports: sessions held, the capacity, whether it is draining or overloaded. */
  get status(): { sessions: number; capacity: number; draining: boolean; overloaded: boolean } {
    return {
      sessions: this.actors.size,
      capacity: this.opts.capacity,
      draining: this.draining,
      overloaded: this.load?.overloaded ?? false,
    };
  }

  /** Room for one more new session: not draining, under capacity, not overloaded. */
  private get hasRoom(): boolean {
    return !this.draining && this.actors.size < this.opts.capacity && !(this.load?.overloaded ?? false);
  }

  async start(): Promise<void> {
    this.startedAt = performance.now();
    [this.leasesKv, this.instancesKv, this.stateKv] = await Promise.all([
      this.bus.kv(BUCKETS.leases),
      this.bus.kv(BUCKETS.instances, { ttl: INSTANCE_KEY_TTL_MS }),
      this.bus.kv(BUCKETS.state),
    ]);
    await this.heartbeat();
    await this.watch(this.instancesKv, (e) => this.onInstanceEntry(e));
    await this.watch(this.leasesKv, (e) => this.onLeaseEntry(e));
    this.subs.push(this.bus.subscribeGlobal(channels.sessionClose, (m) => this.onClose(m.sessionId)));
    this.updateOpenSubscription();
    this.load?.on('change', this.onLoadChange);
    this.timers.push(setInterval(() => void this.heartbeat(), this.opts.heartbeatMs));
    this.timers.push(setInterval(() => void this.claimOrphans(), Math.max(50, this.opts.heartbeatMs / 2)));
    await this.registerService();
    // Subscriptions are registered with the server before start() returns: an open sent right after lands.
    await this.bus.nc.flush();
    this.log.info({ stage: this.stage, capacity: this.opts.capacity }, 'actor host started');
  }

  private async watch(kv: KV, onEntry: (e: KvWatchEntry) => void): Promise<void> {
    const it = await kv.watch({ key: `${this.stage}.>` });
    this.watches.push(it);
    void (async () => {
      for await (const e of it) {
        try {
          onEntry(e);
        } catch (err) {
          this.log.error({ err, key: e.key }, 'kv watch entry failed');
        }
      }
    })();
  }

  private async registerService(): Promise<void> {
    // @nats-io/services is still a 3.0 pre-release pinned to an older nats-core: same wire protocol, but its
    // NatsConnection type is a distinct copy, hence the cast.
    this.service = await new Svcm(this.bus.nc as unknown as ConstructorParameters<typeof Svcm>[0]).add({
      name: this.stage,
      version: this.opts.version,
      description: `voice-agent stage ${this.stage}`,
      metadata: { instanceId: this.instanceId },
    });
    this.service.addEndpoint('sessions', {
      subject: subjects.svcSessions(this.stage, this.instanceId),
      handler: (_err, msg) => {
        msg.respond(
          JSON.stringify({ instanceId: this.instanceId, sessions: this.sessionIds, capacity: this.opts.capacity }),
        );
      },
    });
  }

  // ---- placement ----------------------------------------------------------------------------------------

  private readonly onLoadChange = (overloaded: boolean): void => {
    const about = { load: this.load?.latest, sessions: this.actors.size };
    if (overloaded) this.log.warn(about, 'overloaded: claiming no new session');
    else this.log.info(about, 'load back under its limit: claiming again');
    this.updateOpenSubscription();
  };

  /** At capacity, overloaded or draining, this instance leaves the queue group so the next open goes to a peer. */
  private updateOpenSubscription(): void {
    const wanted = this.hasRoom;
    // Gateways read this instance's room from its heartbeat: a change is told now, not a heartbeat later.
    if (wanted !== (this.openSub !== undefined) && this.startedAt > 0 && !this.draining) void this.heartbeat();
    if (wanted && !this.openSub) {
      this.openSub = this.bus.subscribeGlobal(
        channels.sessionOpen,
        async (m, meta) => {
          await this.onOpen(m.sessionId, m.config, meta.reply);
        },
        { queue: this.stage },
      );
    } else if (!wanted && this.openSub) {
      this.openSub.unsubscribe();
      this.openSub = undefined;
    }
  }

  private async onOpen(sessionId: SessionId, config: SessionConfig, reply?: string): Promise<void> {
    const key = this.leaseKey(sessionId);
    const hasRoom = this.hasRoom;
    // Without room the lease is parked ownerless: any instance with room picks it up on its next scan.
    const lease: Lease = { owner: hasRoom ? this.instanceId : null, config };
    let revision: number;
    try {
      revision = await this.leasesKv.create(key, JSON.stringify(lease));
    } catch {
      // Already exists: a repeated open. Acknowledge if it is ours, otherwise the owner answers.
      if (this.actors.has(sessionId)) this.ack(sessionId, reply);
      return;
    }
    if (!hasRoom) return;
    this.leases.set(sessionId, { lease, revision });
    await this.startActor(sessionId, config, false);
    this.ack(sessionId, reply);
  }

  private ack(sessionId: SessionId, reply?: string): void {
    // Acks go to the opener's inbox only (see isInbox): never onto a subject the opener named for us.
    if (!reply || !isInbox(reply)) return;
    const ack: SessionOpenAck = { sessionId, stage: this.stage, instanceId: this.instanceId };
    this.bus.nc.publish(reply, JSON.stringify(ack));
  }

  private onLeaseEntry(e: KvWatchEntry): void {
    const sessionId = this.sessionFromKey(e.key);
    if (!sessionId) return;
    if (e.operation !== 'PUT') {
      this.leases.delete(sessionId);
      if (this.actors.has(sessionId)) void this.stopActor(sessionId, 'closed');
      return;
    }
    const parsed = Lease.safeParse(safeJson(e.value));
    if (!parsed.success) {
      this.log.warn({ key: e.key }, 'unreadable lease ignored');
      return;
    }
    const known = this.leases.get(sessionId);
    if (known && known.revision > e.revision) return;
    this.leases.set(sessionId, { lease: parsed.data, revision: e.revision });
    if (this.actors.has(sessionId) && parsed.data.owner !== this.instanceId) {
      // Someone took this session over (we were taken for dead): stop at once, they own it now.
      void this.stopActor(sessionId, 'lost');
    } else if (parsed.data.owner === null) {
      void this.claimOrphans();
    }
  }

  private onInstanceEntry(e: KvWatchEntry): void {
    const id = e.key.slice(this.stage.length + 1);
    if (e.operation === 'PUT') {
      this.lastSeen.set(id, performance.now());
      this.departed.delete(id);
    } else {
      this.lastSeen.delete(id);
      this.departed.add(id);
      void this.claimOrphans();
    }
  }

  private isAlive(owner: string): boolean {
    if (owner === this.instanceId) return true;
    if (this.departed.has(owner)) return false;
    const seen = this.lastSeen.get(owner) ?? this.startedAt;
    return performance.now() - seen <= this.opts.leaseMs;
  }

  /** Takes over sessions that are ownerless or whose owner stopped beating; CAS makes one taker win. */
  private async claimOrphans(): Promise<void> {
    if (this.draining) return;
    const orphans = [...this.leases].filter(
      ([sid, { lease }]) =>
        !this.actors.has(sid) && !this.claiming.has(sid) && (lease.owner === null || !this.isAlive(lease.owner)),
    );
    // Shuffled so that peers racing for a dead instance's sessions spread them instead of colliding.
    for (const [sessionId, { lease, revision }] of shuffle(orphans)) {
      if (this.draining || this.actors.size + this.claiming.size >= this.opts.capacity) return;
      this.claiming.add(sessionId);
      try {
        const next: Lease = { owner: this.instanceId, config: lease.config };
        const rev = await this.leasesKv.update(this.leaseKey(sessionId), JSON.stringify(next), revision);
        this.leases.set(sessionId, { lease: next, revision: rev });
        counter(METRIC.sessionsReclaimed).add(1, { [ATTR.stage]: this.stage });
        this.log.info({ sessionId, previousOwner: lease.owner }, 'session reclaimed');
        await this.startActor(sessionId, lease.config, true);
      } catch {
        // Lost the race (the revision moved): the watch brings the new lease.
      } finally {
        this.claiming.delete(sessionId);
      }
    }
  }

  // ---- actor lifecycle ----------------------------------------------------------------------------------

  private async startActor(sessionId: SessionId, config: SessionConfig, reclaimed: boolean): Promise<void> {
    const ctx = new ActorContext(sessionId, config, this.stage, this.bus, this.stateKv, reclaimed, this.log);
    const entry: { ctx: ActorContext; actor: SessionActor | undefined } = { ctx, actor: undefined };
    this.actors.set(sessionId, entry);
    this.updateOpenSubscription();
    ctx.followControl();
    try {
      entry.actor = await this.opts.createActor(ctx);
    } catch (err) {
      this.log.error({ err, sessionId }, 'actor failed to start');
      this.bus.publishError(subjects.error(sessionId), 'internal', `${this.stage} actor failed to start`);
    }
    counter(METRIC.sessionsClaimed).add(1, { [ATTR.stage]: this.stage });
    upDownCounter(METRIC.sessionsOwned).add(1, { [ATTR.stage]: this.stage });
    this.log.info({ sessionId, reclaimed }, 'session claimed');
    this.emit('claimed', { sessionId, reclaimed });
  }

  private async stopActor(sessionId: SessionId, reason: StopReason): Promise<void> {
    const entry = this.actors.get(sessionId);
    if (!entry) return;
    this.actors.delete(sessionId);
    entry.ctx.close(reason);
    try {
      await entry.actor?.stop?.(reason);
    } catch (err) {
      this.log.error({ err, sessionId }, 'actor stop failed');
    }
    upDownCounter(METRIC.sessionsOwned).add(-1, { [ATTR.stage]: this.stage });
    this.log.info({ sessionId, reason }, 'session released');
    this.emit('released', { sessionId, reason });
    this.updateOpenSubscription();
  }

  private async onClose(sessionId: SessionId): Promise<void> {
    const known = this.leases.get(sessionId);
    if (this.actors.has(sessionId)) await this.stopActor(sessionId, 'closed');
    // The owner deletes the lease; an ownerless (parked) lease is deleted by whoever hears the close.
    if (known && (known.lease.owner === this.instanceId || known.lease.owner === null)) {
      await this.leasesKv.delete(this.leaseKey(sessionId)).catch(() => undefined);
      await this.clearState(sessionId);
    }
  }

  private async clearState(sessionId: SessionId): Promise<void> {
    const keys = await this.stateKv.keys(`${this.stage}.${sessionId}.>`);
    for await (const k of keys) await this.stateKv.purge(k).catch(() => undefined);
  }

  private async heartbeat(): Promise<void> {
    try {
      await this.instancesKv.put(
        `${this.stage}.${this.instanceId}`,
        JSON.stringify({ ...this.status, room: this.hasRoom }),
      );
    } catch (err) {
      this.log.warn({ err }, 'heartbeat failed');
    }
  }

  /**
   * Graceful stop (SIGTERM): stop claiming, let each session's turn in flight finish, release every lease so a
   * peer claims it at once, then leave. Telemetry and the bus are the caller's to close afterwards.
   */
  async drain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    this.load?.off('change', this.onLoadChange);
    this.updateOpenSubscription();
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.log.info({ sessions: this.actors.size }, 'draining: handing sessions over');
    await Promise.all(
      this.sessionIds.map(async (sessionId) => {
        const entry = this.actors.get(sessionId);
        if (!entry) return;
        if (!(await entry.ctx.idle(this.opts.handoverTimeoutMs))) {
          this.log.warn({ sessionId }, 'turn still in flight at handover timeout');
        }
        await this.stopActor(sessionId, 'handover');
        await this.release(sessionId);
      }),
    );
    for (const s of this.subs.splice(0)) s.unsubscribe();
    for (const w of this.watches.splice(0)) w.stop();
    await this.instancesKv.delete(`${this.stage}.${this.instanceId}`).catch(() => undefined);
    await this.service?.stop().catch(() => undefined);
    this.log.info('drained');
  }

  private async release(sessionId: SessionId): Promise<void> {
    const known = this.leases.get(sessionId);
    if (!known || known.lease.owner !== this.instanceId) return;
    const next: Lease = { owner: null, config: known.lease.config };
    try {
      await this.leasesKv.update(this.leaseKey(sessionId), JSON.stringify(next), known.revision);
    } catch (err) {
      this.log.warn({ err, sessionId }, 'release failed (lease moved)');
    }
  }

  private leaseKey(sessionId: SessionId): string {
    return leaseKey(this.stage, sessionId);
  }

  private sessionFromKey(key: string): SessionId | undefined {
    const parsed = SessionId.safeParse(key.slice(this.stage.length + 1));
    return parsed.success ? parsed.data : undefined;
  }
}

function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
