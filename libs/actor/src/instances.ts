import type { KV, KvWatchEntry } from '@nats-io/kv';
import type { Logger } from '@va/telemetry';

/**
 * The instances of one stage, as the instances bucket tells them: this instance's heartbeat (which also tells
 * gateways how much room it has), and when each peer's was last seen — on the local clock only, so that
 * clock skew between hosts cannot make a peer look dead.
 */
export class Instances {
  private readonly lastSeen = new Map<string, number>();
  private readonly departed = new Set<string>();
  /**
   * This instance's own heartbeat is failing (the bucket has no leader: a NATS node of the cluster lost): peers'
   * silence says nothing then, and none is taken for dead. `heardAgainAt`: when own beats went through again —
   * peers are judged from then on, so they too have a lease's time to be heard.
   */
  private beatFailing = false;
  private heardAgainAt = 0;
  /**
   * This instance's connection is down (its server lost): it hears no heartbeat, and the ones sent meanwhile are
   * not delivered again — peers are judged from the reconnect on.
   */
  private disconnected = false;

  constructor(
    private readonly kv: KV,
    private readonly stage: string,
    private readonly instanceId: string,
    /** Silence after which an instance is taken for dead. */
    private readonly leaseMs: number,
    /** When this instance started: a peer not heard from yet counts as seen then. */
    private readonly startedAt: number,
    private readonly log: Logger,
  ) {}

  /** Applies a watched heartbeat entry; true when it says a peer departed (its key deleted or expired). */
  apply(e: KvWatchEntry): boolean {
    const id = e.key.slice(this.stage.length + 1);
    if (e.operation === 'PUT') {
      this.lastSeen.set(id, performance.now());
      this.departed.delete(id);
      return false;
    }
    this.lastSeen.delete(id);
    this.departed.add(id);
    return true;
  }

  isAlive(owner: string): boolean {
    if (owner === this.instanceId) return true;
    if (this.departed.has(owner)) return false;
    if (this.beatFailing || this.disconnected) return true;
    const seen = Math.max(this.lastSeen.get(owner) ?? this.startedAt, this.heardAgainAt);
    return performance.now() - seen <= this.leaseMs;
  }

  /** Follows this instance's own connection: while it is down, and a lease after, no peer is taken for dead. */
  connection(state: 'disconnect' | 'reconnect'): void {
    this.disconnected = state === 'disconnect';
    if (state === 'reconnect') this.heardAgainAt = performance.now();
    this.log.info(`connection ${state}: peers judged from the reconnect on`);
  }

  /** Proves this instance alive, with what it says about itself; a failure is logged (the next beat retries). */
  async beat(status: object): Promise<void> {
    try {
      await this.kv.put(this.key, JSON.stringify(status));
      if (this.beatFailing) {
        this.beatFailing = false;
        this.heardAgainAt = performance.now();
        this.log.info('heartbeat through again: peers judged from now on');
      }
    } catch (err) {
      if (!this.beatFailing) this.log.warn({ err }, 'heartbeat failed: no peer taken for dead until it goes through');
      this.beatFailing = true;
    }
  }

  /** Says this instance is gone, so peers need not wait out its lease. */
  async leave(): Promise<void> {
    await this.kv.delete(this.key).catch(() => undefined);
  }

  private get key(): string {
    return `${this.stage}.${this.instanceId}`;
  }
}
