import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import type { ActorContext, SessionActor } from '@va/actor';
import { Bus } from '@va/bus';
import { detachedActorContext } from '@va/testkit';
import { sessionId } from '@va/protocol';
import type { AudioChunk, STT, TranscriptEvent } from '@va/providers';
import { ATTR, METRIC, shutdownTelemetry, startTelemetry } from '@va/telemetry';
import {
  decodeAttributes,
  startNatsServer,
  startOtlpReceiver,
  waitFor,
  type NatsServerHandle,
  type OtlpReceiver,
} from '@va/testkit';
import { FRAMES_QUEUE, STAGE, sttActor } from '../src/actor.js';

/*
 * Overload (issue 10, item 5): a recogniser five times slower than real time. The frames waiting for it stay
 * within their bound (ms of audio), the oldest are dropped and counted in va.audio.dropped (reason `behind`),
 * and the warning about it is rate-limited.
 */

let nats: NatsServerHandle;
let otlp: OtlpReceiver;
let bus: Bus;
let client: Bus;
const warnings: { msg: string; dropped?: number }[] = [];

beforeAll(async () => {
  // Before anything creates an instrument: the counters must be the exporting ones.
  otlp = await startOtlpReceiver();
  startTelemetry({ serviceName: STAGE, endpoint: otlp.endpoint, metricExportIntervalMs: 200 });
  nats = await startNatsServer();
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) warnings.push(JSON.parse(line));
      done();
    },
  });
  bus = await Bus.connect({ stage: STAGE, servers: nats.url, logger: pino({ level: 'warn' }, sink) });
  client = await Bus.connect({ stage: 'test-client', servers: nats.url });
});

afterAll(async () => {
  await client?.close();
  await bus?.close();
  await nats?.stop();
  await shutdownTelemetry();
  await otlp?.stop();
});

/** A recogniser that takes 100 ms for each 20 ms chunk. */
class SlowSTT implements STT {
  readonly provider = 'slow';
  readonly sampleRate = 16000;
  consumed = 0;
  closed = false;
  async *transcribe(audio: AsyncIterable<AudioChunk>, signal: AbortSignal): AsyncGenerator<TranscriptEvent> {
    for await (const chunk of audio) {
      if (signal.aborted) return;
      await new Promise((r) => setTimeout(r, 100));
      this.consumed++;
      // Never a word: this recogniser is only slow.
      if (chunk.samples.length < 0)
        yield { text: '', final: false, stable: false, confidence: 0, startMs: 0, endMs: 0 };
    }
  }
  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}

function exported(name: string, attrs: Record<string, string>): number {
  let value = 0;
  for (const m of otlp.metrics()) {
    if (m.name !== name) continue;
    for (const p of m.dataPoints as { attributes?: unknown; asInt?: string | number; asDouble?: number }[]) {
      const a = decodeAttributes(p.attributes as Parameters<typeof decodeAttributes>[0]);
      if (Object.entries(attrs).every(([k, v]) => a[k] === v)) value = Number(p.asInt ?? p.asDouble ?? 0);
    }
  }
  return value;
}

describe('stt slower than real time', () => {
  it('keeps at most maxBufferedMs of audio waiting, drops the oldest, counts and warns (rate-limited)', async () => {
    const sid = sessionId('stt-overload');
    const stt = new SlowSTT();
    const ctx: ActorContext = await detachedActorContext(bus, sid, STAGE);
    const actor: SessionActor = await sttActor(async () => stt, { maxBufferedMs: 1000 })(ctx);
    await bus.nc.flush();

    // 20 s of audio in about 4 s (5x real time, like a recogniser 5x too slow), sampling the queue as it goes.
    let maxWaitingMs = 0;
    const frames = 1000;
    for (let seq = 0; seq < frames; seq++) {
      client.publishAudio('in', sid, {
        samples: new Int16Array(320).fill(100),
        sampleRate: 16000,
        seq,
        tsMs: seq * 20,
      });
      if (seq % 5 === 4) {
        await new Promise((r) => setTimeout(r, 20));
        maxWaitingMs = Math.max(maxWaitingMs, ctx.queueStats()[FRAMES_QUEUE]!.weight);
      }
    }
    await client.nc.flush();
    await waitFor(() => ctx.queueStats()[FRAMES_QUEUE]!.size >= 45, { message: 'the queue at its bound' });

    const stats = ctx.queueStats()[FRAMES_QUEUE]!;
    expect(stats.capacity).toBe(1000);
    expect(maxWaitingMs).toBeLessThanOrEqual(1000);
    expect(stats.highWater).toBeLessThanOrEqual(1000);
    // Everything not consumed and not waiting was dropped: nothing else holds frames.
    expect(stats.dropped).toBeGreaterThan(500);
    expect(stats.dropped + stats.size + stt.consumed).toBeGreaterThanOrEqual(frames - 2);
    await waitFor(
      () =>
        exported(METRIC.audioDropped, {
          [ATTR.stage]: STAGE,
          [ATTR.dropReason]: 'behind',
          [ATTR.queue]: FRAMES_QUEUE,
        }) >= stats.dropped,
      { timeoutMs: 5000, message: `${METRIC.audioDropped}{behind} exported` },
    );
    // One warning per few seconds, not one per frame.
    const behind = warnings.filter((w) => w.msg.startsWith('stage behind real time'));
    expect(behind.length).toBeGreaterThanOrEqual(1);
    expect(behind.length).toBeLessThanOrEqual(3);
    console.log(
      `stt 5x slower than real time: ${frames} frames sent, ${stt.consumed} recognised, ${stats.dropped} dropped, ` +
        `at most ${stats.highWater} ms waiting (bound ${stats.capacity} ms), ${behind.length} warning(s)`,
    );

    ctx.close('closed');
    await actor.stop?.('closed');
    expect(stt.closed).toBe(true);
  });
});
