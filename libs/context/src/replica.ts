import { stateKey } from '@va/actor';
import type { Bus } from '@va/bus';
import { BUCKETS, type SessionId } from '@va/protocol';
import type { Logger } from '@va/telemetry';
import { EMPTY_DOC, parseDoc, type HistoryDoc } from './history.js';

type KV = Awaited<ReturnType<Bus['kv']>>;
type KvWatchEntry = Awaited<ReturnType<KV['watch']>> extends AsyncIterable<infer E> ? E : never;

/** The stage that writes the history, and its state name (key `session-context.<sid>.history`, state bucket). */
export const HISTORY_OWNER = 'session-context';
export const HISTORY_STATE = 'history';

export interface HistoryReplicaOptions {
  /** The stage whose history documents to follow; default HISTORY_OWNER. */
  stage?: string;
  log?: Logger;
  /**
   * Keep only the sessions this says yes to (e.g. the ones this instance holds); default every session. Others
   * are dropped as they arrive; `read()` still fetches any session from KV.
   */
  keep?: (sessionId: string) => boolean;
}

/**
 * Session histories in memory, kept in step with KV by one watch on the history owner's keys of the state bucket:
 * reading a session's context costs no round trip. session-context's actor writes KV; every replica — each
 * session-context instance serving ctx.get, and each responder, which reads its context here instead of asking
 * when a turn ends — learns of the write through the watch. A purge (session closed) drops the entry.
 */
export class HistoryReplica {
  private readonly docs = new Map<string, { doc: HistoryDoc; revision: number }>();
  private readonly keep: (sessionId: string) => boolean;
  private watcher: { stop(): void } | undefined;
  private stopped = false;
  /** Resolves when the watch loop has ended. */
  readonly closed: Promise<void>;

  private constructor(
    private readonly kv: KV,
    private readonly stage: string,
    private readonly log: Logger,
    iter: AsyncIterable<KvWatchEntry> & { stop(): void },
    keep: ((sessionId: string) => boolean) | undefined,
  ) {
    this.keep = keep ?? (() => true);
    this.watcher = iter;
    this.closed = this.consume(iter);
  }

  static async open(bus: Bus, opts: HistoryReplicaOptions = {}): Promise<HistoryReplica> {
    const stage = opts.stage ?? HISTORY_OWNER;
    const kv = await bus.kv(BUCKETS.state);
    // Last value of every key first, then each update as it happens (an ordered consumer under the hood).
    const iter = await kv.watch({ key: `${stage}.>` });
    return new HistoryReplica(kv, stage, opts.log ?? bus.log, iter, opts.keep);
  }

  get size(): number {
    return this.docs.size;
  }

  /** The cached document, or undefined when this instance has not seen the session (yet). */
  peek(sessionId: SessionId): HistoryDoc | undefined {
    return this.docs.get(sessionId)?.doc;
  }

  /**
   * The session's document: from memory, or read from KV on a miss (a session whose first write the watch has
   * not delivered yet, one this replica did not keep until now, or one with no history at all). What a miss
   * reads is kept (for a session `keep` says yes to) with its revision, so a slow read never puts an older
   * version over a newer one the watch brought meanwhile.
   */
  async read(sessionId: SessionId): Promise<{ doc: HistoryDoc; hit: boolean }> {
    const cached = this.docs.get(sessionId);
    if (cached) return { doc: cached.doc, hit: true };
    const entry = await this.kv.get(stateKey(this.stage, sessionId, HISTORY_STATE));
    const doc = entry?.operation === 'PUT' ? parseDoc(entry.json<unknown>()) : undefined;
    if (doc && entry && this.keep(sessionId) && !this.stopped) {
      const known = this.docs.get(sessionId);
      if (!known || known.revision < entry.revision) this.docs.set(sessionId, { doc, revision: entry.revision });
    }
    return { doc: this.docs.get(sessionId)?.doc ?? doc ?? EMPTY_DOC, hit: false };
  }

  stop(): void {
    this.stopped = true;
    this.watcher?.stop();
    this.watcher = undefined;
  }

  private async consume(iter: AsyncIterable<KvWatchEntry>): Promise<void> {
    try {
      for await (const e of iter) this.apply(e);
    } catch (err) {
      if (!this.stopped) this.log.error({ err }, 'history watch failed');
    }
    // Without the watch the map would go stale: serve every request from KV instead.
    this.docs.clear();
  }

  /** Stops keeping a session (e.g. released here): its entry goes until `keep` says yes again. */
  forget(sessionId: string): void {
    this.docs.delete(sessionId);
  }

  private apply(e: KvWatchEntry): void {
    const sessionId = this.sessionOf(e.key);
    if (sessionId === undefined) return;
    if (e.operation !== 'PUT' || !this.keep(sessionId)) {
      this.docs.delete(sessionId);
      return;
    }
    const known = this.docs.get(sessionId);
    if (known && known.revision >= e.revision) return;
    let raw: unknown;
    try {
      raw = e.json<unknown>();
    } catch {
      raw = undefined;
    }
    const doc = parseDoc(raw);
    if (!doc) {
      this.log.warn({ key: e.key }, 'unreadable history ignored');
      this.docs.delete(sessionId);
      return;
    }
    this.docs.set(sessionId, { doc, revision: e.revision });
  }

  /** `<stage>.<sessionId>.history` → sessionId; other state names of the stage are not ours. */
  private sessionOf(key: string): string | undefined {
    const suffix = `.${HISTORY_STATE}`;
    if (!key.startsWith(`${this.stage}.`) || !key.endsWith(suffix)) return undefined;
    const sid = key.slice(this.stage.length + 1, -suffix.length);
    return sid === '' || sid.includes('.') ? undefined : sid;
  }
}
