import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createInbox, headers as natsHeaders } from '@nats-io/transport-node';
import { openSession } from '@va/actor';
import { dither, frames, type Pcm } from '@va/audio';
import { Bus } from '@va/bus';
import { startPipeline, type Pipeline } from '@va/e2e';
import {
  AUDIO_FORMAT_V1,
  AUDIO_SOURCES,
  encodeAudioFrame,
  type AudioFrame,
  channels,
  decodeAudioFrame,
  ErrorEvent,
  requests,
  sessionId,
  STAGES,
  subjects,
  type SessionId,
} from '@va/protocol';
import { ATTR, createLogger, METRIC } from '@va/telemetry';
import { decodeAttributes, speak, waitFor } from '@va/testkit';
import type { z } from 'zod';

/*
 * Fuzzing the real stages (issue 10, item 4). Six stage processes, a gateway-side client, and ≥ 10,000 bad
 * messages from a seeded PRNG (FUZZ_SEED=<n> replays a run) over every subject of three open sessions and the
 * global ones. Every message sent is checked here, with the protocol's own schemas and audio decoder, to be one
 * its consumers must refuse — so the expected count of rejections per stage and channel is exact:
 *  - `va.messages.rejected` (exported over OTLP) per stage and channel = bad messages sent × that stage's
 *    subscriptions to the subject; the gateway-side client (a Bus named media-gateway, subscribed as the real
 *    gateway actor is) counts its own in `bus.stats.rejected`;
 *  - error events: one per rejection, NOT rate-limited (the bus answers every bad message; the stt and
 *    turn-detector answer every frame at a rate they cannot use, and only their warn LOG is rate-limited).
 *    Session subjects are answered on `va.v1.sess.<sid>.error`; the global ones (session.open/close, ctx.get)
 *    on `va.v1.error`, and a bad ctx.get request also on its reply inbox. Nobody but the gateway subscribes to
 *    audio.out and speech, and nobody to `error` (errors about errors would loop): 0 stage rejections there.
 * Then: every process alive with the same pid, no internal error, and a session opened before the storm and one
 * opened after both get a full turn (flite speech in real time → transcript → turn end → opener and answer →
 * agent audio).
 */

const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31);
const TOTAL = Number(process.env.FUZZ_MESSAGES ?? 10_200);
const stages = STAGES.filter((s) => s !== 'media-gateway');
const GATEWAY = 'media-gateway';
const fuzzSessions = ['fuzz-a', 'fuzz-b', 'fuzz-c'].map((s) => sessionId(s));
const goodBefore = sessionId('good-before');
const goodAfter = sessionId('good-after');
const enc = new TextEncoder();
const dec = new TextDecoder();

/** Who consumes each subject of a session (from the services' subscriptions; the gateway is the test's client). */
const CONSUMERS: Record<string, readonly string[]> = {
  'audio.in': ['stt', 'turn-detector'],
  'audio.out': [GATEWAY],
  vad: ['tts', GATEWAY],
  transcript: ['turn-detector'],
  turn: ['fast-responder', 'deep-responder', 'tts', 'session-context', GATEWAY],
  'reply.fast': ['tts', GATEWAY],
  'reply.deep': ['tts', GATEWAY],
  tool: ['session-context'],
  speech: [GATEWAY],
  playout: ['turn-detector', 'session-context'],
  control: [...stages, GATEWAY],
  error: [],
  'session.open': stages,
  'session.close': stages,
  'ctx.get': ['session-context'],
};

// ---- seeded PRNG -------------------------------------------------------------------------------------------

function mulberry32(a: number): () => number {
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Rng {
  private readonly next: () => number;
  constructor(seed: number) {
    this.next = mulberry32(seed);
  }
  float(): number {
    return this.next();
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]!;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  /** Log-uniform size in [lo, hi]: most small, a few huge. */
  size(lo: number, hi: number): number {
    return Math.round(Math.exp(Math.log(lo) + this.next() * (Math.log(hi) - Math.log(lo))));
  }
  bytes(n: number): Uint8Array {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = Math.floor(this.next() * 256);
    return b;
  }
  ascii(n: number): string {
    let s = '';
    for (let i = 0; i < n; i++) s += String.fromCharCode(32 + Math.floor(this.next() * 95));
    return s;
  }
}

// ---- what is sent ------------------------------------------------------------------------------------------

interface FuzzMessage {
  leaf: string;
  subject: string;
  data: Uint8Array;
  headers?: Record<string, string>;
  reply?: string;
  kind: string;
}

const BASE: Record<string, Record<string, unknown>> = {
  vad: { kind: 'start', atMs: 100 },
  transcript: { text: 'hello', final: true, stable: true, confidence: 0.9, startMs: 0, endMs: 100 },
  turn: { turnId: 'fz1', kind: 'end', text: 'hello', eouProb: 0.9, speechEndMs: 100 },
  'reply.fast': { turnId: 'fz1', seq: 0, delta: 'hi', done: false },
  'reply.deep': { turnId: 'fz1', seq: 0, delta: 'hi', done: false },
  tool: {
    turnId: 'fz1',
    calls: [{ call: { id: 'c1', name: 'get_local_time', arguments: '{}' }, result: '{}', ok: true, durationMs: 1 }],
  },
  speech: { turnId: 'fz1', source: 'fast', text: 'hi', frames: 1, skipped: false },
  playout: { turnId: 'fz1', playedMs: 20, spokenText: 'hi', done: true, interrupted: false },
  control: { kind: 'cancel', turnId: 'fz1', reason: 'fuzz' },
  error: { stage: 'stt', code: 'bad-message', message: 'x', subject: 'va.v1.x' },
  'session.open': { sessionId: 'fuzz-open', config: {} },
  'session.close': { sessionId: 'fuzz-close' },
  'ctx.get': { sessionId: 'fuzz-a', maxTokens: 100 },
};

const SCHEMAS: Record<string, z.ZodType> = {
  vad: channels.vad.schema,
  transcript: channels.transcript.schema,
  turn: channels.turn.schema,
  'reply.fast': channels.replyFast.schema,
  'reply.deep': channels.replyDeep.schema,
  tool: channels.tool.schema,
  speech: channels.speech.schema,
  playout: channels.playout.schema,
  control: channels.control.schema,
  error: channels.error.schema,
  'session.open': channels.sessionOpen.schema,
  'session.close': channels.sessionClose.schema,
  'ctx.get': requests.ctxGet.schema,
};

const WRONG_VALUES = (rng: Rng): unknown[] => [
  null,
  true,
  -1,
  1.5,
  '',
  'x.y',
  '*',
  '>',
  ' ',
  [],
  {},
  [1, 2, 3],
  { nested: { deeper: [null] } },
  rng.ascii(rng.int(1, 40)),
  -1e300,
  2 ** 53 + 1,
  'NaN',
];

/** Oversized: mostly past the limit by a little (≤ 64 KB), one in ten up to the server's max payload. */
function hugeSize(rng: Rng, lo: number, max: number): number {
  return rng.chance(0.1) ? rng.size(64 * 1024, max) : rng.size(lo, 64 * 1024);
}

/** A JSON body that must fail its channel's schema (checked by the caller). */
function badJson(rng: Rng, leaf: string, maxBytes: number): { body: Uint8Array; kind: string } {
  const base = structuredClone(BASE[leaf]!);
  const keys = Object.keys(base);
  const json = (v: unknown) => enc.encode(JSON.stringify(v));
  const roll = rng.int(0, 13);
  switch (roll) {
    case 0: {
      delete base[rng.pick(keys)];
      return { body: json(base), kind: 'missing-field' };
    }
    case 1:
    case 2: {
      base[rng.pick(keys)] = rng.pick(WRONG_VALUES(rng));
      return { body: json(base), kind: 'wrong-type' };
    }
    case 3: {
      base[rng.pick(['extra', '__proto__', 'constructor', 'toString', rng.ascii(8)])] = rng.pick(WRONG_VALUES(rng));
      return { body: json(base), kind: 'unknown-key' };
    }
    case 4: {
      const text = JSON.stringify(base);
      return { body: enc.encode(text.slice(0, rng.int(0, text.length - 1))), kind: 'truncated' };
    }
    case 5:
      return { body: rng.bytes(rng.size(1, 4096)), kind: 'random-bytes' };
    case 6:
      return { body: enc.encode(rng.ascii(rng.size(1, 2048))), kind: 'random-text' };
    case 7:
      return {
        body: enc.encode(rng.pick(['42', '"turn"', 'null', 'true', '[]', '[{}]', '""', '{}', '0', '-0', '1e309'])),
        kind: 'wrong-top-level',
      };
    case 8: {
      // Oversized: one text field far past its limit, up to the server's max payload.
      const n = hugeSize(rng, 8_001, maxBytes - 512);
      const key = rng.pick(keys);
      base[key] = 'x'.repeat(n);
      return { body: json(base), kind: 'oversized' };
    }
    case 9: {
      const depth = rng.size(10, 20_000);
      return { body: enc.encode('['.repeat(depth) + ']'.repeat(rng.chance(0.5) ? depth : depth - 1)), kind: 'deep' };
    }
    case 10: {
      base[rng.pick(keys)] = Array.from({ length: rng.size(10, 50_000) }, (_, i) => i);
      return { body: json(base), kind: 'huge-array' };
    }
    case 11: {
      // Numbers the schema must refuse: negative times, probabilities past 1, Infinity (via 1e999).
      const text = JSON.stringify(base).replace(
        /:(-?\d+(\.\d+)?)/,
        () => `:${rng.pick(['-5', '1e999', '2', '-1e-9'])}`,
      );
      return { body: enc.encode(text), kind: 'out-of-range' };
    }
    case 12: {
      base[rng.pick(keys)] = rng.pick(['\ud800', 'a\u0000b', '\u202e', '😀'.repeat(rng.int(1, 3000)), 'a.b.c']);
      return { body: json(base), kind: 'odd-string' };
    }
    default:
      return { body: new Uint8Array(0), kind: 'empty' };
  }
}

/** An audio frame its consumers must refuse: undecodable, or (audio.in) at a rate the session does not use. */
function badAudio(rng: Rng, leaf: 'audio.in' | 'audio.out', maxBytes: number) {
  const frame = (over: Partial<AudioFrame> = {}) =>
    encodeAudioFrame({
      samples: Int16Array.from(rng.bytes(640)),
      sampleRate: 16000,
      seq: rng.int(0, 1000),
      tsMs: rng.int(0, 100_000),
      ...(leaf === 'audio.out' ? { turnId: 'tfuzz', source: 'deep' as const, textOffset: rng.int(0, 99) } : {}),
      ...over,
    });
  const headerLength = (d: Uint8Array) => d[2]! | (d[3]! << 8);
  const patch = (d: Uint8Array, at: number, bytes: number[]) => {
    d.set(bytes, at);
    return d;
  };
  const f64 = (v: number) => Array.from(new Uint8Array(Float64Array.of(v).buffer));
  const u32 = (v: number) => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
  let data: Uint8Array;
  let kind: string;
  const roll = rng.int(0, leaf === 'audio.in' ? 10 : 9);
  switch (roll) {
    case 0:
      data = patch(rng.bytes(rng.int(1, 25)), 0, [AUDIO_FORMAT_V1]);
      kind = 'truncated-header';
      break;
    case 1:
      data = patch(frame(), 4, u32(rng.pick([16001, 0, 44100, 0xffffffff, 1])));
      kind = 'bad-rate';
      break;
    case 2: {
      const d = frame();
      data = new Uint8Array(d.byteLength + 1);
      data.set(d);
      kind = 'odd-bytes';
      break;
    }
    case 3:
      data = rng.pick([new Uint8Array(0), frame().subarray(0, headerLength(frame()))]);
      kind = 'empty';
      break;
    case 4: {
      // Longer than 200 ms, up to the server's max payload.
      const head = frame().subarray(0, 26);
      data = padded(rng, Math.max(6_402, hugeSize(rng, 6_402, maxBytes - 1024) & ~1));
      data.set(head);
      kind = 'oversized';
      break;
    }
    case 5:
      data = patch(frame(), 0, [rng.pick([0, 0xa0, 0xa2, 0x7b, 0xff])]);
      kind = 'bad-format';
      break;
    case 6:
      data = patch(frame(), 12, f64(rng.pick([-1, NaN, Infinity, -0.5])));
      kind = 'bad-ts';
      break;
    case 7: {
      const d = frame({ turnId: 'abc' });
      data = patch(d, 26, [rng.pick([0x2e, 0x2a, 0x3e, 0x20, 0xe9])]);
      kind = 'bad-turn';
      break;
    }
    case 8:
      data = patch(frame(), 24, [rng.int(AUDIO_SOURCES.length, 254)]);
      kind = 'bad-source';
      break;
    case 9: {
      const d = frame();
      data = patch(d, 2, [rng.pick([1, 24, 27, 0xff]), rng.pick([0, 0xff])]);
      kind = 'bad-header-length';
      break;
    }
    default: {
      // Decodable, at a rate the session (16 kHz) and the VAD cannot use: refused by the stages themselves.
      const rate = rng.pick([8000, 24000, 48000] as const);
      const n = Math.round((rate / 1000) * rng.pick([10, 20, 40]));
      data = frame({ sampleRate: rate, samples: new Int16Array(n) });
      kind = 'wrong-rate';
    }
  }
  return { data, kind };
}

/** Big payloads: a random head, zeros after it (generating a megabyte byte by byte is slow). */
function padded(rng: Rng, n: number): Uint8Array {
  const b = new Uint8Array(n);
  b.set(rng.bytes(4096));
  return b;
}

function refusedJson(leaf: string, body: Uint8Array): boolean {
  let raw: unknown;
  try {
    raw = JSON.parse(dec.decode(body));
  } catch {
    return true;
  }
  return !SCHEMAS[leaf]!.safeParse(raw).success;
}

function refusedAudio(leaf: string, data: Uint8Array): boolean {
  try {
    const frame = decodeAudioFrame(data);
    return leaf === 'audio.in' && frame.sampleRate !== 16000;
  } catch {
    return true;
  }
}

const SESSION_LEAVES = [
  'audio.in',
  'audio.out',
  'vad',
  'transcript',
  'turn',
  'reply.fast',
  'reply.deep',
  'tool',
  'speech',
  'playout',
  'control',
  'error',
] as const;
const GLOBAL_LEAVES = ['session.open', 'session.close', 'ctx.get'] as const;
const ALL_LEAVES = [...SESSION_LEAVES, ...GLOBAL_LEAVES];

function sessionSubject(leaf: string, sid: SessionId): string {
  return `va.v1.sess.${sid}.${leaf}`;
}

/** The i-th bad message of a run: deterministic for a seed. */
function* generate(rng: Rng, total: number, maxBytes: number, ctxInbox: string): Generator<FuzzMessage> {
  for (let i = 0; i < total; i++) {
    // Every subject gets its share; the order is shuffled by the PRNG.
    const leaf = i < ALL_LEAVES.length * 20 ? ALL_LEAVES[i % ALL_LEAVES.length]! : rng.pick(ALL_LEAVES);
    const global = (GLOBAL_LEAVES as readonly string[]).includes(leaf);
    const subject = global
      ? leaf === 'session.open'
        ? subjects.sessionOpen
        : leaf === 'session.close'
          ? subjects.sessionClose
          : subjects.ctxGet
      : sessionSubject(leaf, rng.pick(fuzzSessions));
    // A generated message that happens to be valid is drawn again: only refusals are sent.
    for (let attempt = 0; ; attempt++) {
      if (attempt > 50) throw new Error(`fuzz: no invalid ${leaf} message after 50 draws (seed ${seed})`);
      if (leaf === 'audio.in' || leaf === 'audio.out') {
        const a = badAudio(rng, leaf, maxBytes);
        if (!refusedAudio(leaf, a.data)) continue;
        yield { leaf, subject, data: a.data, kind: a.kind };
      } else {
        const j = badJson(rng, leaf, maxBytes);
        if (j.body.byteLength > maxBytes - 256 || !refusedJson(leaf, j.body)) continue;
        yield { leaf, subject, data: j.body, kind: j.kind, ...(leaf === 'ctx.get' ? { reply: ctxInbox } : {}) };
      }
      break;
    }
  }
}

// ---- the pipeline ------------------------------------------------------------------------------------------

let pipeline: Pipeline;
let client: Bus;
/** The gateway side: subscribed to the fuzz sessions as the real gateway actor is, schema-checked. */
let gateway: Bus;
const pids = new Map<string, number>();
const exited = new Set<string>();

beforeAll(async () => {
  const t0 = performance.now();
  console.log(`fuzz seed ${seed} (FUZZ_SEED=${seed} replays this run)`);
  pipeline = await startPipeline({
    llmTtftMs: 20,
    llmTokensPerSecond: 200,
    env: { OTEL_METRIC_EXPORT_INTERVAL: '500' },
  });
  for (const s of pipeline.stages) {
    pids.set(s.stage, s.pid);
    void s.child.exited.then(() => exited.add(s.stage));
  }
  client = await Bus.connect({ stage: 'fuzz-client', servers: pipeline.nats.url });
  gateway = await Bus.connect({
    stage: GATEWAY,
    servers: pipeline.nats.url,
    logger: createLogger(GATEWAY, {}, 'silent'),
  });
  await Promise.all(
    [goodBefore, ...fuzzSessions].map(async (sid) => {
      const acks = await openSession(client, sid, {}, { stages, timeoutMs: 30_000 });
      expect(acks.map((a) => a.stage).sort()).toEqual([...stages].sort());
    }),
  );
  const noop = () => undefined;
  for (const sid of fuzzSessions) {
    for (const ch of [channels.vad, channels.turn, channels.replyFast, channels.replyDeep, channels.speech]) {
      gateway.subscribe(ch, sid, noop);
    }
    gateway.subscribe(channels.control, sid, noop);
    gateway.subscribeAudio('out', sid, noop);
  }
  await gateway.nc.flush();
  console.log(`pipeline up, 4 sessions open in ${Math.round(performance.now() - t0)} ms`);
}, 120_000);

afterAll(async () => {
  await client?.close();
  await gateway?.close();
  await pipeline?.stop();
});

/** Latest exported value of a counter per (service, channel), summed over the data points' other attributes. */
function rejectedByStage(): Map<string, Map<string, number>> {
  const latest = new Map<string, Map<string, number>>();
  for (const m of pipeline.otlp.metrics()) {
    if (m.name !== METRIC.messagesRejected) continue;
    const perChannel = new Map<string, number>();
    for (const p of m.dataPoints as { attributes?: unknown; asInt?: string | number; asDouble?: number }[]) {
      const attrs = decodeAttributes(p.attributes as Parameters<typeof decodeAttributes>[0]);
      const channel = String(attrs[ATTR.channel]);
      perChannel.set(channel, (perChannel.get(channel) ?? 0) + Number(p.asInt ?? p.asDouble ?? 0));
    }
    latest.set(m.serviceName, perChannel);
  }
  return latest;
}

/** waitFor, with a failure message written when it fails (it shows the state at the end, not the start). */
async function until(check: () => boolean, timeoutMs: number, describe: () => string): Promise<void> {
  try {
    await waitFor(check, { timeoutMs, intervalMs: 100 });
  } catch {
    throw new Error(`timed out after ${timeoutMs} ms: ${describe()}`);
  }
}

/** Speaks one utterance into a session in real time (20 ms frames), with dither before and quiet after. */
async function talk(sid: SessionId, speech: Pcm): Promise<void> {
  const quiet = (ms: number, seed: number): Pcm => ({
    samples: dither(new Int16Array(16 * ms), 4, seed),
    sampleRate: 16000,
  });
  const lead = quiet(400, 7);
  const tail = quiet(1800, 11);
  const all = [...frames(lead, 20), ...frames(speech, 20), ...frames(tail, 20)];
  const start = performance.now();
  for (let seq = 0; seq < all.length; seq++) {
    const due = start + seq * 20;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const f = all[seq]!;
    const samples = new Int16Array(320);
    samples.set(f.samples.subarray(0, 320));
    client.publishAudio('in', sid, { samples, sampleRate: 16000, seq, tsMs: seq * 20 });
  }
}

interface TurnWatch {
  turnEnd?: string;
  vad: string[];
  finals: string[];
  fast: Map<string, { text: string; done: boolean }>;
  deep: Map<string, { text: string; done: boolean }>;
  audio: Map<string, number>;
}

function watchTurn(sid: SessionId): TurnWatch {
  const w: TurnWatch = { vad: [], finals: [], fast: new Map(), deep: new Map(), audio: new Map() };
  client.subscribe(channels.vad, sid, (v) => void w.vad.push(v.kind));
  client.subscribe(channels.transcript, sid, (t) => void (t.final && t.text.trim() && w.finals.push(t.text)));
  client.subscribe(channels.turn, sid, (t) => void (t.kind === 'end' && (w.turnEnd ??= t.turnId)));
  const reply = (into: TurnWatch['fast']) => (r: { turnId: string; delta: string; done: boolean }) => {
    const got = into.get(r.turnId) ?? { text: '', done: false };
    into.set(r.turnId, { text: got.text + r.delta, done: got.done || r.done });
  };
  client.subscribe(channels.replyFast, sid, reply(w.fast));
  client.subscribe(channels.replyDeep, sid, reply(w.deep));
  client.subscribeAudio('out', sid, (f) => void (f.turnId && w.audio.set(f.turnId, (w.audio.get(f.turnId) ?? 0) + 1)));
  return w;
}

function answered(w: TurnWatch): boolean {
  const t = w.turnEnd;
  return (
    t !== undefined &&
    w.fast.get(t)?.done === true &&
    w.deep.get(t)?.done === true &&
    (w.deep.get(t)?.text ?? '') !== '' &&
    (w.audio.get(t) ?? 0) >= 10
  );
}

describe('fuzzing the six stages', () => {
  it(`refuses ≥ 10,000 bad messages, each counted and answered, with no crash and no stuck session`, async () => {
    const started = performance.now();
    const maxBytes = client.nc.info?.max_payload ?? 1024 * 1024;
    const rng = new Rng(seed);

    // Answers: error events of the fuzz sessions and the global error subject, and ctx.get's error replies.
    const errors = new Map<string, number>();
    const internal: ErrorEvent[] = [];
    let echoedGarbage = 0;
    const onError = (data: Uint8Array) => {
      const e = ErrorEvent.safeParse(JSON.parse(dec.decode(data) || 'null'));
      if (!e.success) return void echoedGarbage++; // our own garbage on the error subject
      errors.set(e.data.stage, (errors.get(e.data.stage) ?? 0) + 1);
      if (e.data.code === 'internal') internal.push(e.data);
    };
    const safe = (f: (d: Uint8Array) => void) => (m: { data: Uint8Array }) => {
      try {
        f(m.data);
      } catch {
        echoedGarbage++;
      }
    };
    for (const sid of fuzzSessions) client.subscribeRaw(subjects.error(sid), safe(onError));
    client.subscribeRaw(subjects.errorGlobal, safe(onError));
    const ctxInbox = createInbox();
    let ctxErrorReplies = 0;
    client.subscribeRaw(ctxInbox, (m) => void (m.headers?.has('va-error') && ctxErrorReplies++));
    await client.nc.flush();

    // The storm.
    const sent = new Map<string, number>();
    const kinds = new Map<string, number>();
    let bytes = 0;
    let largest = 0;
    let sinceFlush = 0;
    for (const msg of generate(rng, TOTAL, maxBytes, ctxInbox)) {
      let hdrs;
      if (msg.headers) {
        hdrs = natsHeaders();
        for (const [k, v] of Object.entries(msg.headers)) hdrs.set(k, v);
      }
      client.nc.publish(msg.subject, msg.data, {
        ...(hdrs ? { headers: hdrs } : {}),
        ...(msg.reply ? { reply: msg.reply } : {}),
      });
      sent.set(msg.leaf, (sent.get(msg.leaf) ?? 0) + 1);
      kinds.set(`${msg.leaf}:${msg.kind}`, (kinds.get(`${msg.leaf}:${msg.kind}`) ?? 0) + 1);
      bytes += msg.data.byteLength;
      largest = Math.max(largest, msg.data.byteLength);
      sinceFlush += msg.data.byteLength + 200;
      // Let the stages keep up: the server cuts off a client whose pending data passes its limit (64 MB).
      if (sinceFlush > 2 * 1024 * 1024) {
        await client.nc.flush();
        await new Promise((r) => setTimeout(r, 20));
        sinceFlush = 0;
      }
    }
    await client.nc.flush();
    const stormMs = performance.now() - started;
    const total = [...sent.values()].reduce((a, b) => a + b, 0);
    expect(total).toBeGreaterThanOrEqual(10_000);

    // Expected rejections: per stage and channel, and in all per stage.
    const expected = new Map<string, Map<string, number>>();
    for (const [leaf, n] of sent) {
      for (const stage of CONSUMERS[leaf]!) {
        const m = expected.get(stage) ?? new Map<string, number>();
        m.set(leaf, (m.get(leaf) ?? 0) + n);
        expected.set(stage, m);
      }
    }
    const sum = (m: Map<string, number> | undefined) => [...(m?.values() ?? [])].reduce((a, b) => a + b, 0);

    // A session opened after the storm, and one opened before it: both answered in full.
    const acks = await openSession(client, goodAfter, {}, { stages, timeoutMs: 30_000 });
    expect(acks.map((a) => a.stage).sort()).toEqual([...stages].sort());
    const watches = [watchTurn(goodBefore), watchTurn(goodAfter)];
    await client.nc.flush();
    const speech = await speak('what should I pack for a hike in the mountains');
    await Promise.all([talk(goodBefore, speech), talk(goodAfter, speech)]);
    await until(
      () => watches.every(answered),
      25_000,
      () =>
        `a full turn in both good sessions (${JSON.stringify(
          watches.map((w) => ({
            vad: w.vad,
            finals: w.finals,
            turnEnd: w.turnEnd,
            fast: [...w.fast],
            deep: [...w.deep],
            audio: [...w.audio],
          })),
        )})`,
    );

    // Every bad message counted by every stage that consumes it (OTLP), and answered once per refusal.
    const describeCounts = () => {
      const got = rejectedByStage();
      return JSON.stringify({
        expected: Object.fromEntries([...expected].map(([s, m]) => [s, Object.fromEntries(m)])),
        rejected: Object.fromEntries([...got].map(([s, m]) => [s, Object.fromEntries(m)])),
        errors: Object.fromEntries(errors),
        gatewayRejected: gateway.stats.rejected,
        ctxErrorReplies,
      });
    };
    await until(
      () => {
        const got = rejectedByStage();
        return (
          stages.every((s) => [...(expected.get(s) ?? [])].every(([leaf, n]) => (got.get(s)?.get(leaf) ?? 0) === n)) &&
          stages.every((s) => sum(got.get(s)) === sum(expected.get(s))) &&
          gateway.stats.rejected === sum(expected.get(GATEWAY)) &&
          [...stages, GATEWAY].every((s) => (errors.get(s) ?? 0) === sum(expected.get(s))) &&
          ctxErrorReplies === (sent.get('ctx.get') ?? 0)
        );
      },
      30_000,
      () => `rejections and errors as expected: ${describeCounts()}`,
    );

    // No process crashed or was replaced, and nothing failed inside a handler.
    const crashes = pipeline.stages.filter((s) => {
      try {
        process.kill(s.pid, 0);
      } catch {
        return true;
      }
      return exited.has(s.stage) || pids.get(s.stage) !== s.pid;
    });
    expect(crashes.map((s) => s.stage)).toEqual([]);
    expect(internal).toEqual([]);

    const rejected = rejectedByStage();
    const rows = [...stages, GATEWAY].map((s) => {
      const exp = sum(expected.get(s));
      const rej = s === GATEWAY ? gateway.stats.rejected : sum(rejected.get(s));
      return `${s.padEnd(16)} ${String(exp).padStart(8)} ${String(rej).padStart(9)} ${String(errors.get(s) ?? 0).padStart(7)}`;
    });
    console.log(
      [
        `fuzz seed ${seed}: sent ${total} bad messages (${(bytes / 1e6).toFixed(1)} MB, largest ${largest} B of the server's max payload ${maxBytes} B) in ${Math.round(stormMs)} ms`,
        `sent per subject: ${[...sent].map(([l, n]) => `${l}=${n}`).join(' ')}`,
        `kinds: ${kinds.size} (${[...kinds.keys()].slice(0, 12).join(', ')}, …)`,
        `stage            expected  rejected  errors`,
        ...rows,
        `ctx.get error replies ${ctxErrorReplies}/${sent.get('ctx.get') ?? 0}; garbage seen on error subjects ${echoedGarbage}/${sent.get('error') ?? 0}`,
        `crashes=${crashes.length} internal errors=${internal.length}; good sessions answered: ${watches
          .map(
            (w) =>
              `"${w.finals.join(' ')}" → "${w.deep.get(w.turnEnd!)?.text.slice(0, 60)}…" (${w.audio.get(w.turnEnd!)} frames)`,
          )
          .join('; ')}`,
        `total ${Math.round(performance.now() - started)} ms`,
      ].join('\n'),
    );
    expect(echoedGarbage).toBe(sent.get('error') ?? 0);
  }, 120_000);
});
