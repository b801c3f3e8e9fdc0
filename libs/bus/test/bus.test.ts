import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstreamManager } from '@nats-io/jetstream';
import { headers as natsHeaders } from '@nats-io/transport-node';
import { Bus, BusRequestError, extractTrace, injectTrace, rawHeaderBytes, TraceReader } from '@va/bus';
import { channels, encodeAudioFrame, ErrorEvent, requests, sessionId, subjects, type AudioFrame } from '@va/protocol';
import { SPAN, trace } from '@va/telemetry';
import { spawnNode, startNatsServer, startOtlpReceiver, waitFor, type NatsServerHandle } from '@va/testkit';

const peer = fileURLToPath(new URL('./fixtures/peer.ts', import.meta.url));
const sid = sessionId('s-1');
const enc = new TextEncoder();

let nats: NatsServerHandle;
let a: Bus;
let b: Bus;

beforeAll(async () => {
  nats = await startNatsServer();
  a = await Bus.connect({ stage: 'bus-a', servers: nats.url });
  b = await Bus.connect({ stage: 'bus-b', servers: nats.url });
});

afterAll(async () => {
  await a?.drain();
  await b?.drain();
  await nats?.stop();
});

/** Collects error events published for a session. */
function collectErrors(bus: Bus, subject: string): ErrorEvent[] {
  const seen: ErrorEvent[] = [];
  bus.subscribeRaw(subject, (m) => void seen.push(ErrorEvent.parse(m.json())));
  return seen;
}

describe('typed messages across OS processes', () => {
  it('delivers valid messages with the schema applied and never hands a malformed one to the handler', async () => {
    const child = spawnNode(peer, { args: ['subscribe', nats.url, 's-1'], name: 'subscriber' });
    try {
      await child.waitForJson((m) => m.event === 'ready');
      const errors = collectErrors(a, subjects.error(sid));
      await a.nc.flush();

      const hello = { text: 'hello there', final: true, stable: true, confidence: 0.9, startMs: 0, endMs: 800 };
      a.publish(channels.transcript, sid, hello);
      // Raw producers (another language, a buggy build) bypass the typed API: the receiver must still check.
      a.nc.publish(subjects.transcript(sid), enc.encode(JSON.stringify({ text: 42, final: 'yes' })));
      a.nc.publish(subjects.transcript(sid), enc.encode('{not json'));
      // Defaults are the receiver's schema at work: the raw open message carries an empty config.
      a.nc.publish(subjects.sessionOpen, enc.encode(JSON.stringify({ sessionId: 's-1', config: {} })));

      const got = await child.waitForJson<{ msg: { text: string } }>((m) => m.event === 'transcript');
      expect(got.msg).toEqual(hello);
      const open = await child.waitForJson<{ msg: unknown }>((m) => m.event === 'session.open');
      expect(open.msg).toEqual({ sessionId: 's-1', config: { language: 'en-US', sampleRate: 16000 } });

      const stats = await child.waitForJson<{ rejected: number; received: number }>(
        (m) => m.event === 'stats' && m.rejected === 2,
      );
      expect(stats.received).toBe(2);
      expect(child.jsonLines().filter((m) => (m as { event: string }).event === 'transcript')).toHaveLength(1);

      // A flood of bad messages: every one counted and answered, but logged once (then once per 5 s per channel).
      for (let i = 0; i < 40; i++) a.nc.publish(subjects.transcript(sid), enc.encode(`{"flood": ${i}}`));
      await child.waitForJson((m) => m.event === 'stats' && m.rejected === 42, 10_000);
      await waitFor(() => errors.length >= 42, { message: 'an error event per bad message' });
      const logged = child.jsonLines().filter((m) => (m as { msg?: string }).msg === 'message rejected');
      expect(logged.length).toBeGreaterThanOrEqual(1);
      expect(logged.length).toBeLessThanOrEqual(2);

      await waitFor(() => errors.length >= 2, { message: 'two error events' });
      expect(
        errors.every((e) => e.stage === 'peer' && e.code === 'bad-message' && e.subject === subjects.transcript(sid)),
      ).toBe(true);
      expect(errors.map((e) => e.message).join(' ')).toMatch(/text/);
      expect(errors.map((e) => e.message).join(' ')).toMatch(/not JSON/);
    } finally {
      await child.stop();
    }
  });

  it('carries W3C trace context over NATS so a span in process B is the child of one in process A', async () => {
    const otlp = await startOtlpReceiver();
    const env = { OTEL_EXPORTER_OTLP_ENDPOINT: otlp.endpoint };
    const consumer = spawnNode(peer, { args: ['traced-consume', nats.url, 's-2'], env, name: 'consumer' });
    try {
      await consumer.waitForJson((m) => m.event === 'ready');
      const producer = spawnNode(peer, { args: ['traced-publish', nats.url, 's-2'], env, name: 'producer' });
      const published = await producer.waitForJson<{ traceId: string; spanId: string }>((m) => m.event === 'published');
      expect((await producer.exited).code).toBe(0);
      expect((await consumer.exited).code).toBe(0);
      expect(producer.pid).not.toBe(consumer.pid);

      const spans = await otlp.waitForSpans(
        (all) => all.some((s) => s.name === SPAN.turn) && all.some((s) => s.name === SPAN.sttTranscribe),
      );
      const root = spans.find((s) => s.name === SPAN.turn)!;
      const child = spans.find((s) => s.name === SPAN.sttTranscribe)!;
      expect(root.serviceName).toBe('peer-traced-publish');
      expect(child.serviceName).toBe('peer-traced-consume');
      expect(root.traceId).toBe(published.traceId);
      expect(child.traceId).toBe(root.traceId);
      expect(child.parentSpanId).toBe(root.spanId);
      expect(child.attributes['va.session_id']).toBe('s-2');
    } finally {
      await consumer.stop();
      await otlp.stop();
    }
  });
});

describe('in-process bus', () => {
  it('injects and extracts traceparent through NATS headers', () => {
    const spanContext = { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: 1 };
    const ctx = trace.setSpanContext(
      trace.setSpan(extractTrace(undefined), trace.wrapSpanContext(spanContext)),
      spanContext,
    );
    const h = injectTrace(natsHeaders(), ctx);
    expect(h.get('traceparent')).toBe('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
    expect(trace.getSpanContext(extractTrace(h))).toMatchObject({
      traceId: spanContext.traceId,
      spanId: spanContext.spanId,
    });
  });

  it('sends a turn’s audio frames with one encoding of its trace context, decoded once on arrival', async () => {
    const ctxOf = (spanId: string) => {
      const sc = { traceId: '0af7651916cd43dd8448eb211c80319c', spanId, traceFlags: 1 };
      return trace.setSpanContext(extractTrace(undefined), sc);
    };
    const reader = new TraceReader();
    const got: { seq: number; spanId: string | undefined; raw: Uint8Array | undefined | null }[] = [];
    const sub = b.subscribeRaw(subjects.audioOut(sid), (m) => {
      got.push({
        seq: got.length,
        spanId: trace.getSpanContext(reader.read(m))?.spanId,
        raw: rawHeaderBytes(m)?.slice(),
      });
    });
    await b.nc.flush();
    const frame = (seq: number): AudioFrame => ({
      samples: new Int16Array(320),
      sampleRate: 16000,
      seq,
      tsMs: seq * 20,
    });
    for (let i = 0; i < 30; i++) a.publishAudio('out', sid, frame(i), { context: ctxOf('b7ad6b7169203331') });
    for (let i = 30; i < 60; i++) a.publishAudio('out', sid, frame(i), { context: ctxOf('c7ad6b7169203332') });
    a.publishAudio('out', sid, frame(60), { context: extractTrace(undefined) });
    await waitFor(() => got.length === 61);
    expect(got.slice(0, 30).every((g) => g.spanId === 'b7ad6b7169203331')).toBe(true);
    expect(got.slice(30, 60).every((g) => g.spanId === 'c7ad6b7169203332')).toBe(true);
    // The fast path reads nats.js's raw header block; if an upgrade hides it, this says so (decoding still works).
    expect(got[0]!.raw).toBeInstanceOf(Uint8Array);
    expect(new TextDecoder().decode(got[0]!.raw!)).toContain('traceparent');
    // Two contexts: two header blocks decoded for 60 frames. No context: no headers at all.
    expect(reader.decoded).toBe(2);
    expect(got[60]!.raw).toBeUndefined();
    expect(got[60]!.spanId).toBeUndefined();
    sub.unsubscribe();
  });

  it('marks data messages with their turn so consumers can drop stale ones unparsed', async () => {
    const seen: (string | undefined)[] = [];
    const sub = b.subscribe(channels.replyDeep, sid, (_m, meta) => void seen.push(meta.turnId));
    await b.nc.flush();
    a.publish(channels.replyDeep, sid, { turnId: 't-9', seq: 0, delta: 'Hi', done: false });
    await waitFor(() => seen.length === 1);
    expect(seen).toEqual(['t-9']);
    sub.unsubscribe();
  });

  it('refuses to publish a message that fails its schema', () => {
    expect(() => a.publish(channels.vad, sid, { kind: 'maybe', atMs: 1 } as never)).toThrow();
  });

  it('carries audio frames as binary, and rejects malformed ones', async () => {
    const frames: AudioFrame[] = [];
    const errors = collectErrors(a, subjects.error(sid));
    b.subscribeAudio('in', sid, (f) => void frames.push(f));
    await b.nc.flush();
    const rejectedBefore = b.stats.rejected;
    a.publishAudio('in', sid, {
      samples: Int16Array.from({ length: 320 }, (_, i) => i),
      sampleRate: 16000,
      seq: 3,
      tsMs: 60,
    });
    const good = encodeAudioFrame({ samples: new Int16Array(320), sampleRate: 16000, seq: 4, tsMs: 80 });
    const wrongRate = good.slice();
    wrongRate.set([0x44, 0xac, 0, 0], 4); // 44100 Hz
    a.nc.publish(subjects.audioIn(sid), wrongRate);
    a.nc.publish(subjects.audioIn(sid), good.subarray(0, 5));
    await waitFor(() => frames.length === 1 && b.stats.rejected === rejectedBefore + 2);
    expect(frames[0]).toMatchObject({ sampleRate: 16000, seq: 3, tsMs: 60 });
    expect(Array.from(frames[0]!.samples.subarray(0, 4))).toEqual([0, 1, 2, 3]);
    await waitFor(() => errors.length === 2);
    expect(errors.every((e) => e.code === 'bad-audio')).toBe(true);
  });

  it('validates request and reply, and answers a bad request with an error instead of a timeout', async () => {
    const srv = b.serve(requests.ctxGet, (req) => ({
      messages: [{ role: 'user' as const, content: `max ${req.maxTokens}` }],
      summary: null,
    }));
    await b.nc.flush();
    await expect(a.request(requests.ctxGet, { sessionId: sid, maxTokens: 10 })).resolves.toEqual({
      messages: [{ role: 'user', content: 'max 10' }],
      summary: null,
    });
    const raw = await a.nc.request(subjects.ctxGet, enc.encode(JSON.stringify({ sessionId: 's-1', maxTokens: -3 })), {
      timeout: 2000,
    });
    expect(raw.headers?.get('va-error')).toBe('1');
    expect(ErrorEvent.parse(raw.json()).code).toBe('bad-message');
    srv.unsubscribe();

    const broken = b.serve(requests.ctxGet, () => ({ messages: 'nope' }) as never);
    await b.nc.flush();
    await expect(a.request(requests.ctxGet, { sessionId: sid, maxTokens: 10 })).rejects.toBeInstanceOf(BusRequestError);
    broken.unsubscribe();
  });

  it('keeps a subscription alive when its handler throws', async () => {
    let calls = 0;
    const errors = collectErrors(a, subjects.error(sid));
    b.subscribe(channels.vad, sid, () => {
      calls++;
      if (calls === 1) throw new Error('handler bug');
    });
    await b.nc.flush();
    a.publish(channels.vad, sid, { kind: 'start', atMs: 1 });
    a.publish(channels.vad, sid, { kind: 'end', atMs: 2 });
    await waitFor(() => calls === 2 && errors.length === 1);
    expect(errors[0]).toMatchObject({ code: 'internal', message: 'handler bug' });
  });

  it('opens KV buckets and supports compare-and-set', async () => {
    const kv = await a.kv('va_test');
    const rev = await kv.create('k', 'v1');
    await expect(kv.create('k', 'v2')).rejects.toThrow();
    await kv.update('k', 'v3', rev);
    await expect(kv.update('k', 'v4', rev)).rejects.toThrow();
    expect((await (await b.kv('va_test')).get('k'))?.string()).toBe('v3');
  });

  it('refuses a bucket someone created to copy or capture messages (republish, mirror, other subjects)', async () => {
    const jsm = await jetstreamManager(a.nc);
    const plain = { max_msgs_per_subject: 1, allow_rollup_hdrs: true, allow_direct: true };
    await jsm.streams.add({
      name: 'KV_va_leak1',
      subjects: ['$KV.va_leak1.>'],
      republish: { src: '>', dest: '_INBOX_stt.copy.>' },
      ...plain,
    });
    await jsm.streams.add({ name: 'KV_va_leak2', subjects: ['$KV.va_leak2.>', 'va.v1.sess.>'], ...plain });
    await expect(b.kv('va_leak1')).rejects.toThrow(/va_leak1 republishes to _INBOX_stt\.copy/);
    await expect(b.kvOpen('va_leak1')).rejects.toThrow(/refusing to use it/);
    await expect(b.kv('va_leak2')).rejects.toThrow(/stores \$KV\.va_leak2\.>, va\.v1\.sess\.>/);
    // Refused before anything was written into them.
    expect((await jsm.streams.info('KV_va_leak1')).state.messages).toBe(0);
    // A bucket as the product creates it (or `nats kv add`) is used.
    await jsm.streams.add({ name: 'KV_va_fine', subjects: ['$KV.va_fine.>'], ...plain });
    await expect(b.kv('va_fine')).resolves.toBeDefined();
  });
});
