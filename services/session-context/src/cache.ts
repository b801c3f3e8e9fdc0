import { stateKey } from '@va/actor';
import type { Bus } from '@va/bus';
import { BUCKETS, type SessionId } from '@va/protocol';
import type { Logger } from '@va/telemetry';
import { EMPTY_DOC, parseDoc, type HistoryDoc } from './history.js';
import { STAGE } from './options.js';

type KV = Awaited<ReturnType<Bus['kv']>>;
type KvWatchEntry = Awaited<ReturnType<KV['watch']>> extends AsyncIterable<infer E> ? E : never;

/** The actor's state name for the history document (key `session-context.<sid>.history` in the state bucket). */
export const HISTORY_STATE = 'history';

/**
 * Every session's history document in memory, kept in step with KV by a watch on this stage's keys of the
 * state bucket, so ctx.get (answered by any instance) costs no KV round trip. The owner actor writes KV; every
 * instance, the owner included, learns of the write through the watch. A purge (session closed) drops the entry.
 */
export class ContextCache {
  private readonly docs = new Map<string, { doc: HistoryDoc; revision: number }>();
  private watcher: { stop(): void } | undefined;
  private stopped = false;
  /** Resolves when the watch loop has ended. */
  readonly closed: Promise<void>;

  private constructor(
    private readonly kv: KV,
    private readonly stage: string,
    private readonly log: Logger,
    iter: AsyncIterable<KvWatchEntry> & { stop(): void },
  ) {
    this.watcher = iter;
    this.closed = this.consume(iter);
  }

  static async open(bus: Bus, opts: { stage?: string; log?: Logger } = {}): Promise<ContextCache> {
    const stage = opts.stage ?? STAGE;
    const kv = await bus.kv(BUCKETS.state);
    // Last value of every key first, then each update as it happens (an ordered consumer under the hood).
    const iter = await kv.watch({ key: `${stage}.>` });
    return new ContextCache(kv, stage, opts.log ?? bus.log, iter);
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
   * not delivered yet, or one with no history at all). Misses are not cached: the watch is the only writer of
   * the map, so a slow read can never put an older version over a newer one.
   */
  async read(sessionId: SessionId): Promise<{ doc: HistoryDoc; hit: boolean }> {
    const cached = this.docs.get(sessionId);
    if (cached) return { doc: cached.doc, hit: true };
    const entry = await this.kv.get(stateKey(this.stage, sessionId, HISTORY_STATE));
    const doc = entry?.operation === 'PUT' ? parseDoc(entry.json<unknown>()) : undefined;
    return { doc: doc ?? EMPTY_DOC, hit: false };
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

  private apply(e: KvWatchEntry): void {
    const sessionId = this.sessionOf(e.key);
    if (sessionId === undefined) return;
    if (e.operation !== 'PUT') {
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
