import type { KV } from '@nats-io/kv';
import type { SessionId } from '@va/protocol';
import type { Logger } from '@va/telemetry';

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
) {
  const notSaved = (name: string, err: unknown): void => {
    log.warn({ err: String(err), name }, 'state not saved');
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
     * the one that stays; a failure is logged, not thrown — this state is the next owner's safety net.
     */
    keep: (name: string, value: unknown): void => {
      void track(state.put(name, value).catch((err: unknown) => notSaved(name, err)));
    },
    /** Deletes without waiting, in order with `keep`. */
    drop: (name: string): void => {
      void track(state.delete(name).catch((err: unknown) => notSaved(name, err)));
    },
  };
  return state;
}

export type SessionState = ReturnType<typeof sessionState>;
