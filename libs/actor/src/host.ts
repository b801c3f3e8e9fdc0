import { EventEmitter } from 'node:events';
import type { KV, KvWatchEntry } from '@nats-io/kv';
import type { Service } from '@nats-io/services';
import {
  BUCKETS,
  channels,
  INSTANCE_KEY_TTL_MS,
  isInbox,
  type SessionConfig,
  type SessionId,
  type SessionOpenAck,
} from '@va/protocol';
import type { Bus, BusSubscription } from '@va/bus';
import { ATTR, counter, METRIC, type Logger } from '@va/telemetry';
import { ActorTable } from './actors.js';
import { ActorContext } from './context.js';
import {
  newInstanceId,
  resolveHostOptions,
  type ActorHostOptions,
  type ClaimEvent,
  type ReleaseEvent,
  type ResolvedHostOptions,
} from './host-options.js';
import { registerHostService } from './host-service.js';
import { Instances } from './instances.js';
import { LeaseBook, type Lease } from './leases.js';
import type { LoadMonitor } from './load.js';

export {
  ACTOR_HOST_DEFAULTS,
  newInstanceId,
  type ActorFactory,
  type ActorHostOptions,
  type ClaimEvent,
  type ReleaseEvent,
  type SessionActor,
} from './host-options.js';

/**
 * Hosts the session actors of one stage in this process: claims sessions from the stage's queue group,
 * records ownership as a KV lease, proves liveness with heartbeats, re-claims sessions of dead peers, and
 * hands its own sessions over on drain.
 */
export class ActorHost extends EventEmitter<{ claimed: [ClaimEvent]; released: [ReleaseEvent] }> {
  readonly instanceId: string;
  readonly stage: string;
  private readonly opts: ResolvedHostOptions;
  private readonly load: LoadMonitor | undefined;
  private readonly log: Logger;
  private readonly bus: Bus;
  private readonly actors: ActorTable;
  private readonly claiming = new Set<SessionId>();
  /** Every lease of this stage (set in start). */
  private leases!: LeaseBook;
  /** This instance's heartbeat and its peers' (set in start). */
  private instances!: Instances;
  private stateKv!: KV;
  private openSub: BusSubscription | undefined;
  private readonly subs: BusSubscription[] = [];
  private readonly watches: { stop(): void }[] = [];
  private timers: NodeJS.Timeout[] = [];
  /** The heartbeat: it goes on through a drain, or peers would take a session still being handed over. */
  private beating: NodeJS.Timeout | undefined;
  private stopFollowingConnection: (() => void) | undefined;
  private service: Service | undefined;
  private startedAt = 0;
  private draining = false;

  constructor(options: ActorHostOptions) {
    super();
    this.opts = resolveHostOptions(options);
    this.stage = options.stage;
    this.bus = options.bus;
    this.instanceId = options.instanceId ?? newInstanceId();
    this.log = (options.logger ?? options.bus.log).child({ instanceId: this.instanceId });
    this.load = options.load;
    this.actors = new ActorTable({
      stage: this.stage,
      bus: this.bus,
      log: this.log,
      createActor: this.opts.createActor,
      newContext: (sessionId, config, reclaimed) =>
        new ActorContext(sessionId, config, this.stage, this.bus, this.stateKv, reclaimed, this.log),
      onChange: () => this.updateOpenSubscription(),
      onClaimed: (e) => this.emit('claimed', e),
      onReleased: (e) => this.emit('released', e),
    });
  }

  get sessionIds(): SessionId[] {
    return this.actors.ids();
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
    const [leasesKv, instancesKv, stateKv] = await Promise.all([
      this.bus.kv(BUCKETS.leases),
      this.bus.kv(BUCKETS.instances, { ttl: INSTANCE_KEY_TTL_MS }),
      this.bus.kv(BUCKETS.state),
    ]);
    this.leases = new LeaseBook(leasesKv, this.stage, this.log);
    const { leaseMs } = this.opts;
    this.instances = new Instances(instancesKv, this.stage, this.instanceId, leaseMs, this.startedAt, this.log);
    this.stateKv = stateKv;
    this.stopFollowingConnection = this.bus.onConnectionChange((state) => {
      this.instances.connection(state);
      if (state === 'reconnect') for (const sid of this.sessionIds) this.actors.context(sid)?.onReconnect?.();
    });
    await this.heartbeat();
    await this.watch(instancesKv, (e) => this.onInstanceEntry(e));
    await this.watch(leasesKv, (e) => this.onLeaseEntry(e));
    this.subs.push(this.bus.subscribeGlobal(channels.sessionClose, (m) => this.onClose(m.sessionId)));
    this.updateOpenSubscription();
    this.load?.on('change', this.onLoadChange);
    this.beating = setInterval(() => void this.heartbeat(), this.opts.heartbeatMs);
    this.timers.push(setInterval(() => void this.claimOrphans(), Math.max(50, this.opts.heartbeatMs / 2)));
    this.service = await registerHostService(this.bus, {
      stage: this.stage,
      instanceId: this.instanceId,
      version: this.opts.version,
      sessions: () => ({ sessions: this.sessionIds, capacity: this.opts.capacity }),
    });
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
    const hasRoom = this.hasRoom;
    // Without room the lease is parked ownerless: any instance with room picks it up on its next scan.
    const lease: Lease = { owner: hasRoom ? this.instanceId : null, config };
    const revision = await this.leases.create(sessionId, lease);
    if (revision === undefined) {
      // Already exists: a repeated open. Acknowledge if it is ours, otherwise the owner answers.
      if (this.actors.has(sessionId)) this.ack(sessionId, reply);
      return;
    }
    if (!hasRoom) return;
    this.leases.set(sessionId, lease, revision);
    await this.actors.start(sessionId, config, false);
    this.ack(sessionId, reply);
  }

  private ack(sessionId: SessionId, reply?: string): void {
    // Acks go to the opener's inbox only (see isInbox): never onto a subject the opener named for us.
    if (!reply || !isInbox(reply)) return;
    const ack: SessionOpenAck = { sessionId, stage: this.stage, instanceId: this.instanceId };
    this.bus.nc.publish(reply, JSON.stringify(ack));
  }

  private onLeaseEntry(e: KvWatchEntry): void {
    const change = this.leases.apply(e);
    if (!change) return;
    const { sessionId, lease } = change;
    if (!lease) {
      if (this.actors.has(sessionId)) void this.actors.stop(sessionId, 'closed');
    } else if (this.actors.has(sessionId) && lease.owner !== this.instanceId) {
      // Someone took this session over (we were taken for dead): stop at once, they own it now.
      void this.actors.stop(sessionId, 'lost');
    } else if (lease.owner === null) {
      void this.claimOrphans();
    }
  }

  private onInstanceEntry(e: KvWatchEntry): void {
    if (this.instances.apply(e)) void this.claimOrphans();
  }

  /** Takes over sessions that are ownerless or whose owner stopped beating; CAS makes one taker win. */
  private async claimOrphans(): Promise<void> {
    if (this.draining) return;
    const orphans = this.leases.orphans(
      (sid) => this.actors.has(sid) || this.claiming.has(sid),
      (owner) => this.instances.isAlive(owner),
    );
    for (const [sessionId, known] of orphans) {
      if (this.draining || this.actors.size + this.claiming.size >= this.opts.capacity) return;
      this.claiming.add(sessionId);
      try {
        await this.leases.claim(sessionId, known, this.instanceId);
        counter(METRIC.sessionsReclaimed).add(1, { [ATTR.stage]: this.stage });
        this.log.info({ sessionId, previousOwner: known.lease.owner }, 'session reclaimed');
        await this.actors.start(sessionId, known.lease.config, true);
      } catch {
        // Lost the race (the revision moved): the watch brings the new lease.
      } finally {
        this.claiming.delete(sessionId);
      }
    }
  }

  // ---- session end and handover ------------------------------------------------------------------------

  private async onClose(sessionId: SessionId): Promise<void> {
    const known = this.leases.get(sessionId);
    if (this.actors.has(sessionId)) await this.actors.stop(sessionId, 'closed');
    // The owner deletes the lease; an ownerless (parked) lease is deleted by whoever hears the close.
    if (known && (known.lease.owner === this.instanceId || known.lease.owner === null)) {
      await this.leases.delete(sessionId);
      await this.clearState(sessionId);
    }
  }

  private async clearState(sessionId: SessionId): Promise<void> {
    const keys = await this.stateKv.keys(`${this.stage}.${sessionId}.>`);
    for await (const k of keys) await this.stateKv.purge(k).catch(() => undefined);
  }

  private async heartbeat(): Promise<void> {
    await this.instances.beat({ ...this.status, room: this.hasRoom });
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
    await Promise.all(this.sessionIds.map((sessionId) => this.handOver(sessionId)));
    for (const s of this.subs.splice(0)) s.unsubscribe();
    for (const w of this.watches.splice(0)) w.stop();
    this.stopFollowingConnection?.();
    clearInterval(this.beating);
    await this.instances.leave();
    await this.service?.stop().catch(() => undefined);
    this.log.info('drained');
  }

  /** Lets the session's turn in flight finish (up to the handover timeout), stops its actor, parks its lease. */
  private async handOver(sessionId: SessionId): Promise<void> {
    const ctx = this.actors.context(sessionId);
    if (!ctx) return;
    if (!(await ctx.idle(this.opts.handoverTimeoutMs))) {
      this.log.warn({ sessionId }, 'turn still in flight at handover timeout');
    }
    await this.actors.stop(sessionId, 'handover');
    await this.leases.release(sessionId, this.instanceId);
  }
}
