import type { KV, KvWatchEntry } from '@nats-io/kv';
import { leaseKey, SessionConfig, SessionId } from '@va/protocol';
import type { Logger } from '@va/telemetry';
import { z } from 'zod';
import { safeJson } from './json.js';

/** Who owns a session (null: parked, for any instance with room to claim) and what it was opened with. */
export const Lease = z.object({ owner: z.string().nullable(), config: SessionConfig });
export type Lease = z.infer<typeof Lease>;

export interface KnownLease {
  lease: Lease;
  revision: number;
}

/**
 * Every lease of one stage, as last seen in KV (kept current by a watch), and the writes that move them: each
 * a compare-and-set on the revision last seen, so of two instances racing for a session one wins.
 */
export class LeaseBook {
  private readonly known = new Map<SessionId, KnownLease>();

  constructor(
    private readonly kv: KV,
    private readonly stage: string,
    private readonly log: Logger,
  ) {}

  get(sessionId: SessionId): KnownLease | undefined {
    return this.known.get(sessionId);
  }

  /** Records a lease this instance wrote. */
  set(sessionId: SessionId, lease: Lease, revision: number): void {
    this.known.set(sessionId, { lease, revision });
  }

  /**
   * Applies a watched entry: the session and its lease now (undefined once deleted), or undefined when the entry
   * says nothing new (not a session key, unreadable, or older than what is known).
   */
  apply(e: KvWatchEntry): { sessionId: SessionId; lease: Lease | undefined } | undefined {
    const parsedId = SessionId.safeParse(e.key.slice(this.stage.length + 1));
    if (!parsedId.success) return undefined;
    const sessionId = parsedId.data;
    if (e.operation !== 'PUT') {
      this.known.delete(sessionId);
      return { sessionId, lease: undefined };
    }
    const parsed = Lease.safeParse(safeJson(e.value));
    if (!parsed.success) {
      this.log.warn({ key: e.key }, 'unreadable lease ignored');
      return undefined;
    }
    const known = this.known.get(sessionId);
    if (known && known.revision > e.revision) return undefined;
    this.known.set(sessionId, { lease: parsed.data, revision: e.revision });
    return { sessionId, lease: parsed.data };
  }

  /**
   * Leases no live instance holds (ownerless, or whose owner is not `alive`) and `skip` does not exclude,
   * shuffled so that peers racing for a dead instance's sessions spread them instead of colliding.
   */
  orphans(skip: (sessionId: SessionId) => boolean, alive: (owner: string) => boolean): [SessionId, KnownLease][] {
    const orphans = [...this.known].filter(
      ([sid, { lease }]) => !skip(sid) && (lease.owner === null || !alive(lease.owner)),
    );
    return shuffle(orphans);
  }

  /** Writes a new session's lease; undefined when it exists already (a repeated open). Not recorded: see `set`. */
  async create(sessionId: SessionId, lease: Lease): Promise<number | undefined> {
    try {
      return await this.kv.create(this.key(sessionId), JSON.stringify(lease));
    } catch {
      return undefined;
    }
  }

  /** Takes a session over for `owner`; throws when the lease moved since `known` (another taker won). */
  async claim(sessionId: SessionId, known: KnownLease, owner: string): Promise<void> {
    const next: Lease = { owner, config: known.lease.config };
    const revision = await this.kv.update(this.key(sessionId), JSON.stringify(next), known.revision);
    this.known.set(sessionId, { lease: next, revision });
  }

  /** Parks a session `owner` holds (owner null), so that a peer claims it at once. */
  async release(sessionId: SessionId, owner: string): Promise<void> {
    const known = this.known.get(sessionId);
    if (!known || known.lease.owner !== owner) return;
    const next: Lease = { owner: null, config: known.lease.config };
    try {
      await this.kv.update(this.key(sessionId), JSON.stringify(next), known.revision);
    } catch (err) {
      this.log.warn({ err, sessionId }, 'release failed (lease moved)');
    }
  }

  /** Deletes a session's lease (its end); a failure is ignored — the lease is gone or goes with its owner. */
  async delete(sessionId: SessionId): Promise<void> {
    await this.kv.delete(this.key(sessionId)).catch(() => undefined);
  }

  private key(sessionId: SessionId): string {
    return leaseKey(this.stage, sessionId);
  }
}

function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}
