import type { KV, KvWatchEntry } from '@va/bus';
import type { TransportLog } from './room.js';

/** The rooms this instance serves, as the room leases need them (`LiveKitDispatcher`). */
export interface RoomHolder {
  /** Stays in the room, rejoining it when LiveKit puts the agent out; resolves false once told to leave it. */
  keepJoined(room: string): Promise<boolean>;
  /** Leaves the room (its sessions close here). */
  leave(room: string): Promise<boolean>;
}

export interface RoomLeaseOptions {
  /** How often the rooms held are renewed. */
  renewMs: number;
  /** A room whose lease has not moved for this long is taken over (its gateway is gone). */
  expireMs: number;
}

export const ROOM_LEASE_DEFAULTS = { renewMs: 250, expireMs: 1000 } as const satisfies RoomLeaseOptions;

interface SeenLease {
  owner: string;
  revision: number;
  /** When the lease last moved, on this instance's clock (no skew between hosts). */
  seenAt: number;
}

const ROOM_PREFIX = 'media-gateway.room.';

/** The lease key of a room (`va_leases`): room names are LiveKit's, checked by `RoomName`, so KV-safe. */
export function roomLeaseKey(room: string): string {
  return `${ROOM_PREFIX}${room}`;
}

/**
 * Which gateway instance serves which LiveKit room, in KV: the holder renews its rooms' leases every `renewMs`;
 * every instance watches them, and one whose lease stops moving for `expireMs` is taken over (a compare-and-set, so
 * of two instances racing, one wins), and joined. The new holder's participants resume their sessions (same
 * session id per room and identity) where the dead gateway left them.
 */
export class RoomLeases {
  private readonly seen = new Map<string, SeenLease>();
  /** Rooms this instance holds the lease of, with the revision it last wrote. */
  private readonly mine = new Map<string, number>();
  private timers: NodeJS.Timeout[] = [];
  private watching: (AsyncIterable<KvWatchEntry> & { stop(): void }) | undefined;

  constructor(
    private readonly kv: KV,
    private readonly instanceId: string,
    private readonly rooms: RoomHolder,
    private readonly opts: RoomLeaseOptions = ROOM_LEASE_DEFAULTS,
    private readonly log: TransportLog,
  ) {}

  async start(): Promise<void> {
    const watch = await this.kv.watch({ key: `${ROOM_PREFIX}>` });
    this.watching = watch;
    void (async () => {
      for await (const e of watch) this.apply(e);
    })().catch((err: unknown) => this.log.warn({ err: String(err) }, 'room lease watch ended'));
    this.timers.push(setInterval(() => void this.renew(), this.opts.renewMs));
    this.timers.push(setInterval(() => void this.takeOverSilent(), Math.max(50, this.opts.expireMs / 4)));
  }

  /**
   * Serves `room` (LIVEKIT_ROOMS): takes its lease unless a live instance holds it — then that one serves it, and
   * this one takes it over if it goes — and stays joined.
   */
  async claim(room: string): Promise<boolean> {
    if (!(await this.hold(room))) return false;
    void this.rooms.keepJoined(room);
    return true;
  }

  /**
   * Takes `room`'s lease for this instance (a `POST /dispatch` joins it next); false when another instance holds
   * it — it serves the room.
   */
  async hold(room: string): Promise<boolean> {
    const key = roomLeaseKey(room);
    const value = JSON.stringify({ owner: this.instanceId });
    const current = await this.kv.get(key);
    let revision: number;
    if (!current || current.operation !== 'PUT') {
      revision = await this.kv.create(key, value).catch(() => 0);
    } else {
      // Another instance's: it serves the room; the watch takes the room over if its lease stops moving.
      if ((current.json<{ owner?: string }>()?.owner ?? '') !== this.instanceId) return false;
      revision = await this.kv.update(key, value, current.revision).catch(() => 0);
    }
    if (revision === 0) return false;
    this.mine.set(room, revision);
    this.log.info({ room }, 'room lease taken');
    return true;
  }

  /** This instance no longer serves `room` (`DELETE /dispatch`, or its join failed): the lease goes with it. */
  async release(room: string): Promise<void> {
    if (!this.mine.delete(room)) return;
    await this.kv.delete(roomLeaseKey(room)).catch(() => undefined);
    this.log.info({ room }, 'room lease released');
  }

  /**
   * Hands every room held over (SIGTERM, after leaving them): each lease is parked (no owner) and another instance
   * takes it at once, without waiting out its expiry.
   */
  async park(): Promise<void> {
    const parked = JSON.stringify({ owner: '' });
    await Promise.all(
      [...this.mine].map(async ([room, revision]) => {
        this.mine.delete(room);
        await this.kv.update(roomLeaseKey(room), parked, revision).catch((err: unknown) => {
          this.log.warn({ room, err: String(err) }, 'room lease not parked: it expires instead');
        });
      }),
    );
  }

  /** Stops renewing (the leases expire, and other instances take the rooms over); the rooms are left by the caller. */
  stop(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.watching?.stop();
  }

  get held(): string[] {
    return [...this.mine.keys()];
  }

  private apply(e: KvWatchEntry): void {
    const room = e.key.slice(ROOM_PREFIX.length);
    if (e.operation !== 'PUT') {
      this.seen.delete(room);
      return;
    }
    let owner = '';
    try {
      owner = (JSON.parse(e.string()) as { owner?: string }).owner ?? '';
    } catch {
      return;
    }
    this.seen.set(room, { owner, revision: e.revision, seenAt: performance.now() });
    // Another instance took a room this one held (it was thought dead): it serves the room now.
    if (owner !== this.instanceId && this.mine.has(room)) {
      this.mine.delete(room);
      this.log.warn({ room, owner }, 'room lease taken by another instance: leaving the room');
      void this.rooms.leave(room);
    }
  }

  private async renew(): Promise<void> {
    const value = JSON.stringify({ owner: this.instanceId });
    for (const [room, revision] of this.mine) {
      try {
        const next = await this.kv.update(roomLeaseKey(room), value, revision);
        // Released meanwhile (`DELETE /dispatch`): not renewed again.
        if (this.mine.has(room)) this.mine.set(room, next);
      } catch (err) {
        // A failed write (KV without a leader) is tried again next time; a lost compare-and-set shows in the watch.
        this.log.warn({ room, err: String(err) }, 'room lease not renewed');
      }
    }
  }

  private async takeOverSilent(): Promise<void> {
    const now = performance.now();
    for (const [room, lease] of this.seen) {
      if (lease.owner === this.instanceId || this.mine.has(room)) continue;
      // Parked by a gateway that stopped (owner ''): taken at once; otherwise once silent for expireMs.
      if (lease.owner !== '' && now - lease.seenAt < this.opts.expireMs) continue;
      try {
        const revision = await this.kv.update(
          roomLeaseKey(room),
          JSON.stringify({ owner: this.instanceId }),
          lease.revision,
        );
        this.mine.set(room, revision);
        this.log.info({ room, from: lease.owner }, 'room taken over from a silent gateway');
        void this.rooms.keepJoined(room);
      } catch {
        // Another instance was quicker: its write shows in the watch.
        lease.seenAt = now;
      }
    }
  }
}
