import type { KV } from '@nats-io/kv';
import type { SessionId } from '@va/protocol';
import type { Logger } from '@va/telemetry';

/** A kept value's write is retried this often at most, backing off from KEEP_RETRY_MS to KEEP_RETRY_MAX_MS. */
const KEEP_ATTEMPTS = 12;
const KEEP_RETRY_MS = 100;
const KEEP_RETRY_MAX_MS = 1000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Where an actor's named state lives in the state bucket; readers on other instances use the same key. */
export function stateKey(stage: string, sessionId: SessionId, name: string): string {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(name)) throw new Error(`invalid state name: ${name}`);
  return `${stage}.${sessionId}.${name}`;
}

/**
 * Durable per-session state (JetStream KV), read back by whichever instance holds the session next. `track`
 * counts a save in flight as work a graceful handover waits for.
 */
export function sessionState(
  kv: KV,
  key: (name: string) => string,
  track: (work: Promise<unknown>) => unknown,
  log: Logger,
  /** Fires when the session ends here (closed, handed over, or taken by a peer): retries stop — no longer ours. */
  ended?: AbortSignal,
) {
  const notSaved = (name: string, err: unknown): void => {
    log.warn({ err: String(err), name }, 'state not saved');
  };
  /** The newest keep/drop of each name: a retry of an older write stops once a newer one was asked for. */
  const newest = new Map<string, number>();
  let writes = 0;
  /**
   * Writes until it goes through or a newer write of the name is asked for: a bucket whose leader was lost (a
   * NATS node gone) refuses writes for seconds, and the value kept then is exactly what a successor needs.
   */
  const persist = async (name: string, write: () => Promise<unknown>): Promise<void> => {
    const mine = ++writes;
    newest.set(name, mine);
    for (let attempt = 0; ; attempt++) {
      try {
        await write();
        break;
      } catch (err) {
        if (attempt === 0) notSaved(name, err);
        const superseded = () => newest.get(name) !== mine || ended?.aborted === true;
        if (attempt >= KEEP_ATTEMPTS - 1 || superseded()) return;
        await sleep(Math.min(KEEP_RETRY_MAX_MS, KEEP_RETRY_MS * 2 ** attempt));
        if (superseded()) return;
      }
    }
    if (newest.get(name) === mine) newest.delete(name);
  };
  const state = {
    get: async <T>(name: string): Promise<T | undefined> => {
      const e = await kv.get(key(name));
      return e && e.operation === 'PUT' ? e.json<T>() : undefined;
    },
    put: async (name: string, value: unknown): Promise<void> => {
      await kv.put(key(name), JSON.stringify(value));
    },
    delete: async (name: string): Promise<void> => {
      await kv.delete(key(name));
    },
    /**
     * Saves without waiting (a drain still waits for it). The connection sends in order, so the newest value is
     * the one that stays; a failure is logged and retried until a newer value replaces it — this state is the
     * next owner's safety net.
     */
    keep: (name: string, value: unknown): void => {
      const json = JSON.stringify(value);
      void track(persist(name, () => kv.put(key(name), json)));
    },
    /** Deletes without waiting, in order with `keep`. */
    drop: (name: string): void => {
      void track(persist(name, () => kv.delete(key(name))));
    },
  };
  return state;
}

export type SessionState = ReturnType<typeof sessionState>;
