import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUDIO_BACKLOG_MS } from '@va/actor';
import { Bus } from '@va/bus';
import { detachedActorContext } from '@va/testkit';
import { sessionId } from '@va/protocol';
import { FakeVAD, type VAD } from '@va/providers';
import { ATTR, createLogger, METRIC, shutdownTelemetry, startTelemetry } from '@va/telemetry';
import {
  decodeAttributes,
  startNatsServer,
  startOtlpReceiver,
  waitFor,
  type NatsServerHandle,
  type OtlpReceiver,
} from '@va/testkit';
import { STAGE, turnDetectorActor } from '../src/actor.js';

/*
 * Overload (issue 10, item 5): a VAD slower than real time. Frames used to pile up without bound in the NATS
 * client behind the awaiting handler; now they wait in the actor's audio backlog, bounded to AUDIO_BACKLOG_MS of
 * audio, and the oldest are dropped and counted (va.audio.dropped, reason `behind`).
 */

let nats: NatsServerHandle;
let otlp: OtlpReceiver;
let bus: Bus;
let client: Bus;

beforeAll(async () => {
  otlp = await startOtlpReceiver();
  startTelemetry({ serviceName: STAGE, endpoint: otlp.endpoint, metricExportIntervalMs: 200 });
  nats = await startNatsServer();
  bus = await Bus.connect({ stage: STAGE, servers: nats.url, logger: createLogger(STAGE, {}, 'error') });
  client = await Bus.connect({ stage: 'test-client', servers: nats.url });
});

afterAll(async () => {
  await client?.close();
  await bus?.close();
  await nats?.stop();
  await shutdownTelemetry();
  await otlp?.stop();
});

/** 50 ms per 20 ms frame: 2.5x slower than real time. */
class SlowVAD implements VAD {
  readonly provider = 'slow';
  readonly sampleRate = 16000;
  readonly frameSamples = 320;
  analysed = 0;
  private readonly inner = new FakeVAD();
  async speechProbability(frame: Int16Array): Promise<number> {
    await new Promise((r) => setTimeout(r, 50));
    this.analysed++;
    return this.inner.speechProbability(frame);
  }
  reset(): void {}
  close(): Promise<void> {
    return Promise.resolve();
  }
}

describe('turn detector slower than real time', () => {
  it('keeps at most AUDIO_BACKLOG_MS of audio waiting for the VAD, dropping and counting the oldest', async () => {
    const sid = sessionId('td-overload');
    const vad = new SlowVAD();
    const ctx = await detachedActorContext(bus, sid, STAGE);
    const actor = await turnDetectorActor(async () => vad)(ctx);
    await bus.nc.flush();

    const frames = 1000; // 20 s of audio, sent in about 2 s
    let maxWaitingMs = 0;
    for (let seq = 0; seq < frames; seq++) {
      client.publishAudio('in', sid, { samples: new Int16Array(320).fill(3), sampleRate: 16000, seq, tsMs: seq * 20 });
      if (seq % 10 === 9) {
        await new Promise((r) => setTimeout(r, 20));
        maxWaitingMs = Math.max(maxWaitingMs, ctx.queueStats()['audio.in']!.weight);
      }
    }
    await client.nc.flush();
    await waitFor(
      () => ctx.queueStats()['audio.in']!.dropped + ctx.queueStats()['audio.in']!.size + vad.analysed >= frames - 1,
      {
        message: 'every frame analysed, waiting or dropped',
      },
    );
    const stats = ctx.queueStats()['audio.in']!;
    expect(stats.capacity).toBe(AUDIO_BACKLOG_MS);
    expect(maxWaitingMs).toBeLessThanOrEqual(AUDIO_BACKLOG_MS);
    expect(stats.highWater).toBeLessThanOrEqual(AUDIO_BACKLOG_MS);
    expect(stats.dropped).toBeGreaterThan(500);
    await waitFor(
      () => {
        let value = 0;
        for (const m of otlp.metrics().filter((m) => m.name === METRIC.audioDropped)) {
          for (const p of m.dataPoints as { attributes?: unknown; asInt?: string | number; asDouble?: number }[]) {
            const a = decodeAttributes(p.attributes as Parameters<typeof decodeAttributes>[0]);
            if (a[ATTR.stage] === STAGE && a[ATTR.dropReason] === 'behind' && a[ATTR.queue] === 'audio.in') {
              value = Number(p.asInt ?? p.asDouble ?? 0);
            }
          }
        }
        return value >= stats.dropped;
      },
      { timeoutMs: 5000, message: `${METRIC.audioDropped}{behind, audio.in} exported` },
    );
    console.log(
      `turn-detector VAD 2.5x slower than real time: ${frames} frames sent, ${vad.analysed} analysed, ` +
        `${stats.dropped} dropped, at most ${stats.highWater} ms waiting (bound ${stats.capacity} ms)`,
    );
    ctx.close('closed');
    await actor.stop?.('closed');
  });
});
