import type { KvWatchEntry } from '@nats-io/kv';
import type { Bus } from '@va/bus';
import { BUCKETS, InstanceHeartbeat } from '@va/protocol';
import type { Logger } from '@va/telemetry';
import { safeJson } from './json.js';

export interface StageCapacityOptions {
  /** An instance whose heartbeat is older than this is gone (killed): it neither has room nor is full. */
  staleMs?: number;
  log?: Logger;
}

export const STAGE_CAPACITY_DEFAULTS = { staleMs: 2_000 } as const satisfies StageCapacityOptions;

/** Instances of one stage as their heartbeats last said. */
export interface StageRoom {
  /** Instances heard from within `staleMs`. */
  live: number;
  /** Of those, the ones that would claim a new session now. */
  withRoom: number;
}

/**
 * Every stage's room for new sessions, from the instances' heartbeats (`va_instances`, kept current by a watch):
 * what lets a gateway refuse a session at once when some stage is full, instead of opening it into a stage
 * that cannot serve it — where it would either wait unclaimed or drag every other session down.
 */
export class StageCapacity {
  private readonly beats = new Map<string, { stage: string; beat: InstanceHeartbeat; at: number }>();
  private readonly staleMs: number;
  private stopper: (() => void) | undefined;
  private stopped = false;

  private constructor(opts: StageCapacityOptions) {
    this.staleMs = opts.staleMs ?? STAGE_CAPACITY_DEFAULTS.staleMs;
  }

  /**
   * Follows the heartbeats. The bucket may not exist yet (no stage has started): then it keeps trying in the
   * background, and until it has heard from a stage it knows nothing of it (`full()` does not refuse for it).
   */
  static watch(bus: Bus, opts: StageCapacityOptions = {}): StageCapacity {
    const capacity = new StageCapacity(opts);
    const log = opts.log ?? bus.log;
    void (async () => {
      for (let attempt = 0; !capacity.stopped; attempt++) {
        try {
          const kv = await bus.kvOpen(BUCKETS.instances);
          const iter = await kv.watch({ key: '>' });
          capacity.stopper = () => iter.stop();
          if (capacity.stopped) iter.stop();
          for await (const e of iter) capacity.apply(e);
          if (capacity.stopped) return;
        } catch (err) {
          if (capacity.stopped) return;
          if (attempt === 0) log.info({ err: String(err) }, 'no instance heartbeats yet: will look again');
        }
        await new Promise((r) => setTimeout(r, 1_000).unref());
      }
    })();
    return capacity;
  }

  stop(): void {
    this.stopped = true;
    this.stopper?.();
  }

  /** How many instances of `stage` are live, and how many of them have room. */
  room(stage: string): StageRoom {
    const now = performance.now();
    let live = 0;
    let withRoom = 0;
    for (const b of this.beats.values()) {
      if (b.stage !== stage || now - b.at > this.staleMs) continue;
      live++;
      if (b.beat.room) withRoom++;
    }
    return { live, withRoom };
  }

  /** The first of `stages` whose live instances are all without room; undefined when none is full. */
  full(stages: readonly string[]): string | undefined {
    return stages.find((s) => {
      const r = this.room(s);
      return r.live > 0 && r.withRoom === 0;
    });
  }

  /** @internal one heartbeat entry (also used by tests). */
  apply(e: Pick<KvWatchEntry, 'key' | 'operation' | 'value'>): void {
    const dot = e.key.indexOf('.');
    if (dot <= 0) return;
    if (e.operation !== 'PUT') {
      this.beats.delete(e.key);
      return;
    }
    const beat = InstanceHeartbeat.safeParse(safeJson(e.value));
    if (!beat.success) return;
    this.beats.set(e.key, { stage: e.key.slice(0, dot), beat: beat.data, at: performance.now() });
  }
}
