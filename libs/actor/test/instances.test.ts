import type { KV, KvWatchEntry } from '@nats-io/kv';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createLogger } from '@va/telemetry';
import { Instances } from '../src/instances.js';

/** A heartbeat bucket whose stream can lose its leader (puts fail, as JetStream's "no responders"). */
class FakeHeartbeatKv {
  leaderless = false;
  async put(): Promise<number> {
    if (this.leaderless) throw new Error('jetstream is not enabled: no responders');
    return 1;
  }
}

const peerBeat = (id: string) => ({ key: `stt.${id}`, operation: 'PUT' }) as KvWatchEntry;

describe('Instances: who is alive', () => {
  beforeEach(() => void vi.useFakeTimers());
  afterEach(() => void vi.useRealTimers());

  it('takes a silent peer for dead after its lease, but no one while its own heartbeat cannot be written', async () => {
    const kv = new FakeHeartbeatKv();
    const log = createLogger('instances-test', {}, 'silent');
    const me = new Instances(kv as unknown as KV, 'stt', 'me', 700, performance.now(), log);
    me.apply(peerBeat('peer'));
    await me.beat({});
    vi.advanceTimersByTime(500);
    expect(me.isAlive('peer')).toBe(true);
    vi.advanceTimersByTime(300);
    expect(me.isAlive('peer'), 'silent beyond the lease').toBe(false);

    // The bucket loses its leader (a NATS node gone): every peer falls silent, and so does this instance.
    me.apply(peerBeat('peer'));
    kv.leaderless = true;
    await me.beat({});
    vi.advanceTimersByTime(5000);
    expect(me.isAlive('peer'), 'silence while the bucket is down says nothing').toBe(true);

    // Back: the peer has a lease's time from now to be heard again.
    kv.leaderless = false;
    await me.beat({});
    vi.advanceTimersByTime(600);
    expect(me.isAlive('peer')).toBe(true);
    vi.advanceTimersByTime(200);
    expect(me.isAlive('peer'), 'still silent a lease after the bucket came back').toBe(false);
  });

  it('judges no peer on the silence of its own dropped connection, and gives each a lease from the reconnect', async () => {
    const kv = new FakeHeartbeatKv();
    const log = createLogger('instances-test', {}, 'silent');
    const me = new Instances(kv as unknown as KV, 'stt', 'me', 700, performance.now(), log);
    me.apply(peerBeat('peer'));
    await me.beat({});
    // This instance's server is lost: it hears nothing while it reconnects, though its beats go through after.
    me.connection('disconnect');
    vi.advanceTimersByTime(900);
    expect(me.isAlive('peer'), 'unheard only because this instance was cut off').toBe(true);
    me.connection('reconnect');
    vi.advanceTimersByTime(600);
    expect(me.isAlive('peer')).toBe(true);
    vi.advanceTimersByTime(200);
    expect(me.isAlive('peer'), 'still silent a lease after the reconnect').toBe(false);
  });
});
