import type { KV } from '@nats-io/kv';
import { describe, expect, it } from 'vitest';
import { createLogger } from '@va/telemetry';
import { sessionState } from '../src/session-state.js';

/** A state bucket that refuses the first `failures` writes (its stream leader lost), then takes them. */
class FlakyStateKv {
  readonly values = new Map<string, string>();
  writes = 0;
  constructor(private failures: number) {}
  async put(key: string, value: string): Promise<number> {
    this.writes++;
    if (this.failures-- > 0) throw new Error('503 no responders');
    this.values.set(key, value);
    return this.writes;
  }
  async delete(key: string): Promise<void> {
    this.writes++;
    this.values.delete(key);
  }
}

function stateOver(kv: FlakyStateKv, ended?: AbortSignal) {
  const work: Promise<unknown>[] = [];
  const state = sessionState(
    kv as unknown as KV,
    (name) => `tts.s.${name}`,
    (w) => work.push(w),
    createLogger('state-test', {}, 'silent'),
    ended,
  );
  return { state, settled: () => Promise.all(work) };
}

describe('session state kept for a successor', () => {
  it('retries a refused write until it goes through', async () => {
    const kv = new FlakyStateKv(2);
    const { state, settled } = stateOver(kv);
    state.keep('speaking', { sentTo: 12 });
    await settled();
    expect(kv.values.get('tts.s.speaking')).toBe('{"sentTo":12}');
    expect(kv.writes).toBe(3);
  });

  it('stops retrying an older value once a newer one is kept, so the newest stays', async () => {
    const kv = new FlakyStateKv(1);
    const { state, settled } = stateOver(kv);
    state.keep('speaking', { sentTo: 12 });
    state.keep('speaking', { sentTo: 40 });
    await settled();
    expect(kv.values.get('tts.s.speaking')).toBe('{"sentTo":40}');
    expect(kv.writes, 'the refused older value is not written again').toBe(2);
  });

  it('stops retrying once the session ended here (a peer owns its state now)', async () => {
    const kv = new FlakyStateKv(5);
    const ended = new AbortController();
    const { state, settled } = stateOver(kv, ended.signal);
    state.keep('speaking', { sentTo: 12 });
    ended.abort();
    await settled();
    expect(kv.values.has('tts.s.speaking')).toBe(false);
    expect(kv.writes).toBe(1);
  });
});
