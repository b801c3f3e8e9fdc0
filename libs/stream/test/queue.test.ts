import { describe, expect, it } from 'vitest';
import { AsyncQueue, SerialBacklog } from '../src/index.js';

const tick = () => new Promise((r) => setTimeout(r, 0));

describe('AsyncQueue', () => {
  it('is unbounded by default and hands items over in order', async () => {
    const q = new AsyncQueue<number>();
    for (let i = 0; i < 10_000; i++) q.push(i);
    q.end();
    let n = 0;
    for await (const v of q) expect(v).toBe(n++);
    expect(n).toBe(10_000);
    expect(q.stats.dropped).toBe(0);
  });

  it('with a capacity drops the oldest, counts and reports each drop, and never holds more than the bound', async () => {
    const dropped: number[] = [];
    const q = new AsyncQueue<number>({ capacity: 5, onDrop: (v) => dropped.push(v) });
    for (let i = 0; i < 12; i++) {
      q.push(i);
      expect(q.stats.weight).toBeLessThanOrEqual(5);
    }
    expect(dropped).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(q.stats).toMatchObject({ size: 5, weight: 5, highWater: 5, capacity: 5, dropped: 7 });
    q.end();
    const got: number[] = [];
    for await (const v of q) got.push(v);
    expect(got).toEqual([7, 8, 9, 10, 11]);
  });

  it('bounds by weight (ms of audio), and drops an item heavier than the whole bound by itself', () => {
    const q = new AsyncQueue<{ ms: number }>({ capacity: 100, weight: (f) => f.ms });
    q.push({ ms: 40 });
    q.push({ ms: 40 });
    q.push({ ms: 40 }); // 120 > 100: the first goes
    expect(q.stats).toMatchObject({ size: 2, weight: 80, dropped: 1 });
    q.push({ ms: 500 });
    expect(q.stats).toMatchObject({ size: 2, weight: 80, dropped: 2, highWater: 80 });
  });

  it('passes items straight to a waiting consumer (nothing queues while it keeps up)', async () => {
    const q = new AsyncQueue<number>({ capacity: 1 });
    const got: number[] = [];
    const reading = (async () => {
      for await (const v of q) got.push(v);
    })();
    for (let i = 0; i < 100; i++) {
      q.push(i);
      await tick();
    }
    q.end();
    await reading;
    expect(got).toHaveLength(100);
    expect(q.stats.dropped).toBe(0);
  });
});

describe('SerialBacklog', () => {
  it('runs a synchronous handler at once, and lets its throw reach the caller', () => {
    const seen: number[] = [];
    const b = new SerialBacklog<number>((v) => void seen.push(v), { capacity: 2, onError: () => undefined });
    for (let i = 0; i < 50; i++) b.push(i);
    expect(seen).toHaveLength(50);
    expect(b.stats.highWater).toBe(0);
    const throwing = new SerialBacklog<number>(
      () => {
        throw new Error('boom');
      },
      { onError: () => undefined },
    );
    expect(() => throwing.push(1)).toThrow('boom');
  });

  it('serialises an asynchronous handler, bounds what waits (drop-oldest) and reports async failures', async () => {
    const seen: number[] = [];
    const errors: number[] = [];
    let release!: () => void;
    const b = new SerialBacklog<number>(
      async (v) => {
        seen.push(v);
        if (v === 0) await new Promise<void>((r) => (release = r));
        if (v === 7) throw new Error('seven');
      },
      { capacity: 3, onError: (_e, v) => errors.push(v) },
    );
    for (let i = 0; i < 8; i++) b.push(i);
    expect(seen).toEqual([0]);
    expect(b.stats).toMatchObject({ size: 3, highWater: 3, dropped: 4 });
    release();
    await new Promise((r) => setTimeout(r, 10));
    expect(seen).toEqual([0, 5, 6, 7]);
    expect(errors).toEqual([7]);
    b.close();
    b.push(9);
    expect(seen).toEqual([0, 5, 6, 7]);
  });
});

describe('AsyncQueue ends', () => {
  const take = async (q: AsyncQueue<number>) => {
    const got: number[] = [];
    try {
      for await (const n of q) got.push(n);
      return { got };
    } catch (error) {
      return { got, error: String(error) };
    }
  };

  it('fail(): the consumer takes what was queued before, then throws', async () => {
    const q = new AsyncQueue<number>();
    q.push(1);
    q.push(2);
    q.fail(new Error('input broke'));
    q.push(3); // after the end: dropped
    expect(await take(q)).toEqual({ got: [1, 2], error: 'Error: input broke' });
  });

  it('fail() wakes a consumer waiting on an empty queue', async () => {
    const q = new AsyncQueue<number>();
    const reading = take(q);
    await new Promise((r) => setImmediate(r));
    q.fail(new Error('gone'));
    expect(await reading).toEqual({ got: [], error: 'Error: gone' });
  });

  it('cancel(): what is queued is dropped and the stream ends; end() lets it drain', async () => {
    const cancelled = new AsyncQueue<number>();
    cancelled.push(1);
    cancelled.cancel();
    expect(await take(cancelled)).toEqual({ got: [] });
    const ended = new AsyncQueue<number>();
    ended.push(1);
    ended.end();
    expect(ended.closed).toBe(true);
    expect(await take(ended)).toEqual({ got: [1] });
  });
});
