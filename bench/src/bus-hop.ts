import { Bus } from '@va/bus';
import { sessionId } from '@va/protocol';
import { startNatsServer } from '@va/testkit';
import { percentile } from './stats.js';

/**
 * One NATS hop of a 20 ms frame (640 bytes + headers) through the typed bus, publisher to subscriber on two
 * connections, paced like real traffic (not a flood). Microseconds.
 */
export async function measureBusHop(
  frames = 5000,
  perSecond = 2500,
): Promise<{ p50: number; p99: number; count: number }> {
  const nats = await startNatsServer({ jetstream: false });
  const a = await Bus.connect({ stage: 'bench-pub', servers: nats.url });
  const b = await Bus.connect({ stage: 'bench-sub', servers: nats.url });
  try {
    const sid = sessionId('hop');
    const sentAt = new Map<number, bigint>();
    const hops: number[] = [];
    b.subscribeAudio('in', sid, (f) => {
      const t0 = sentAt.get(f.seq);
      if (t0 !== undefined) hops.push(Number(process.hrtime.bigint() - t0) / 1000);
    });
    await b.nc.flush();
    const samples = new Int16Array(320);
    const batch = Math.max(1, Math.round(perSecond / 100));
    for (let seq = 0; seq < frames;) {
      for (let k = 0; k < batch && seq < frames; k++, seq++) {
        sentAt.set(seq, process.hrtime.bigint());
        a.publishAudio('in', sid, { samples, sampleRate: 16000, seq, tsMs: seq * 20 });
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    await a.nc.flush();
    const deadline = Date.now() + 5000;
    while (hops.length < frames && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    return { p50: percentile(hops, 50), p99: percentile(hops, 99), count: hops.length };
  } finally {
    await a.close();
    await b.close();
    await nats.stop();
  }
}
