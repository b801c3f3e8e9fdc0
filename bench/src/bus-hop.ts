import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { Bus } from '@va/bus';
import { sessionId } from '@va/protocol';
import { startNatsServer } from '@va/testkit';
import { percentile } from './stats.js';

/**
 * One NATS hop of a 20 ms frame (640 bytes + headers) through the typed bus (encode, trace headers, decode),
 * publisher to subscriber on two connections. Frames go one at a time, each after the previous arrived, so
 * the figure is the hop itself, not a queue behind a burst. Microseconds.
 */
export async function measureBusHop(frames = 5000): Promise<{ p50: number; p99: number; count: number }> {
  const nats = await startNatsServer({ jetstream: false });
  const a = await Bus.connect({ stage: 'bench-pub', servers: nats.url });
  const b = await Bus.connect({ stage: 'bench-sub', servers: nats.url });
  try {
    const sid = sessionId('hop');
    const hops: number[] = [];
    let sentAt = 0n;
    let arrived: (() => void) | undefined;
    b.subscribeAudio('in', sid, () => {
      hops.push(Number(process.hrtime.bigint() - sentAt) / 1000);
      arrived?.();
    });
    await b.nc.flush();
    const samples = new Int16Array(320);
    for (let seq = 0; seq < frames; seq++) {
      const got = new Promise<void>((resolve) => (arrived = resolve));
      sentAt = process.hrtime.bigint();
      a.publishAudio('in', sid, { samples, sampleRate: 16000, seq, tsMs: seq * 20 });
      await Promise.race([got, new Promise((r) => setTimeout(r, 1000))]);
    }
    return { p50: percentile(hops, 50), p99: percentile(hops, 99), count: hops.length };
  } finally {
    await a.close();
    await b.close();
    await nats.stop();
  }
}

export const ECHO_SUBJECT = 'bench.echo';

/**
 * The floor under every hop of a turn: a bare NATS message from one *idle* process to another. Requests go to an
 * echo in a child process every `gapMs` (a turn's hops come after the processes sat idle), and half the round
 * trip is one hop. On a VM an idle process (and nats-server) must first be woken — that wake-up, not the code, is
 * most of a hop here. Microseconds.
 */
export async function measureIdleHop(requests = 50, gapMs = 200): Promise<{ p50: number; p99: number }> {
  const nats = await startNatsServer({ jetstream: false });
  const echo = spawn(process.execPath, [new URL('./idle-echo.js', import.meta.url).pathname, nats.url], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const bus = await Bus.connect({ stage: 'bench-ping', servers: nats.url });
  try {
    await once(echo.stdout, 'data');
    const hops: number[] = [];
    const payload = new Uint8Array(200);
    for (let i = 0; i < requests; i++) {
      await new Promise((r) => setTimeout(r, gapMs));
      const sentAt = process.hrtime.bigint();
      await bus.nc.request(ECHO_SUBJECT, payload, { timeout: 2000 });
      hops.push(Number(process.hrtime.bigint() - sentAt) / 2000);
    }
    return { p50: percentile(hops, 50), p99: percentile(hops, 99) };
  } finally {
    echo.stdin.end();
    await bus.close();
    await Promise.race([once(echo, 'exit'), new Promise((r) => setTimeout(r, 3000))]);
    if (echo.exitCode === null) echo.kill();
    await nats.stop();
  }
}
