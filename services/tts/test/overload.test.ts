import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '@va/bus';
import { detachedActorContext } from '@va/testkit';
import { channels, ErrorEvent, sessionId, subjects, type SpeechDone } from '@va/protocol';
import { FakeTTS } from '@va/providers';
import { ATTR, createLogger, METRIC, shutdownTelemetry, startTelemetry } from '@va/telemetry';
import {
  decodeAttributes,
  startNatsServer,
  startOtlpReceiver,
  waitFor,
  type NatsServerHandle,
  type OtlpReceiver,
} from '@va/testkit';
import { MAX_SPOKEN_CHARS, STAGE, ttsActor } from '../src/actor.js';

/*
 * Overload (issue 10, item 5): reply text streamed faster and longer than a synthesizer can speak it. What one
 * source of a turn may queue for synthesis is bounded (MAX_SPOKEN_CHARS, what a `speech` message can carry); the
 * rest is dropped and counted in va.messages.dropped (reason `too-long`) instead of growing the queue — and the
 * turn still ends with its speech message (it used to fail its schema past that length).
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

describe('tts fed more text than a turn may speak', () => {
  it('queues at most MAX_SPOKEN_CHARS per source, drops and counts the rest, and still finishes the turn', async () => {
    const sid = sessionId('tts-overload');
    const tts = new FakeTTS({ msPerChar: 2, rtf: 0.005 });
    const ctx = await detachedActorContext(bus, sid, STAGE);
    const actor = await ttsActor(tts, { fillers: [] })(ctx);
    const speech: SpeechDone[] = [];
    const errors: ErrorEvent[] = [];
    client.subscribe(channels.speech, sid, (s) => void speech.push(s));
    client.subscribeRaw(subjects.error(sid), (m) => void errors.push(ErrorEvent.parse(m.json())));
    await client.nc.flush();
    await bus.nc.flush();

    const turnId = 'long1';
    const deltas = 20; // 39,600 characters
    client.publish(channels.turn, sid, { turnId, kind: 'end', text: 'go on', eouProb: 1, speechEndMs: 0 });
    client.publish(channels.replyFast, sid, { turnId, seq: 0, delta: '', done: true });
    for (let seq = 0; seq < deltas; seq++) {
      client.publish(channels.replyDeep, sid, { turnId, seq, delta: 'Words and more words. '.repeat(90), done: false });
    }
    client.publish(channels.replyDeep, sid, { turnId, seq: deltas, delta: '', done: true });

    await waitFor(() => speech.some((s) => s.source === 'deep'), { timeoutMs: 20_000, message: 'the answer spoken' });
    const deep = speech.find((s) => s.source === 'deep')!;
    expect(deep.text.length).toBe(MAX_SPOKEN_CHARS);
    expect(deep.frames).toBeGreaterThan(0);
    expect(errors).toEqual([]);
    await waitFor(
      () => {
        let value = 0;
        for (const m of otlp.metrics().filter((m) => m.name === METRIC.messagesDropped)) {
          for (const p of m.dataPoints as { attributes?: unknown; asInt?: string | number; asDouble?: number }[]) {
            const a = decodeAttributes(p.attributes as Parameters<typeof decodeAttributes>[0]);
            if (a[ATTR.stage] === STAGE && a[ATTR.dropReason] === 'too-long' && a[ATTR.channel] === 'reply.deep') {
              value = Number(p.asInt ?? p.asDouble ?? 0);
            }
          }
        }
        // 1980 characters a delta: 8 fit, the 9th is cut at 16,000, the other 11 are dropped whole.
        return value === 12;
      },
      { timeoutMs: 5000, message: `${METRIC.messagesDropped}{too-long, reply.deep} = 12 exported` },
    );
    ctx.close('closed');
    await actor.stop?.('closed');
  });
});
