import { describe, expect, it } from 'vitest';
import {
  AUDIO_FORMAT_V1,
  MAX_FRAME_TEXT_BYTES,
  AudioFrameError,
  channels,
  decodeAudioFrame,
  encodeAudioFrame,
  LIMITS,
  parseSessionSubject,
  requests,
  sessionId,
  SessionOpen,
  subjects,
  Transcript,
  Turn,
  type SessionId,
} from '@va/protocol';

const sid = sessionId('s-1');

describe('subjects', () => {
  it('builds every per-session subject of DESIGN §3 under va.v1', () => {
    expect(subjects.audioIn(sid)).toBe('va.v1.sess.s-1.audio.in');
    expect(subjects.vad(sid)).toBe('va.v1.sess.s-1.vad');
    expect(subjects.transcript(sid)).toBe('va.v1.sess.s-1.transcript');
    expect(subjects.turn(sid)).toBe('va.v1.sess.s-1.turn');
    expect(subjects.replyFast(sid)).toBe('va.v1.sess.s-1.reply.fast');
    expect(subjects.replyDeep(sid)).toBe('va.v1.sess.s-1.reply.deep');
    expect(subjects.audioOut(sid)).toBe('va.v1.sess.s-1.audio.out');
    expect(subjects.playout(sid)).toBe('va.v1.sess.s-1.playout');
    expect(subjects.control(sid)).toBe('va.v1.sess.s-1.control');
    expect(subjects.error(sid)).toBe('va.v1.sess.s-1.error');
    expect(subjects.sessionOpen).toBe('va.v1.session.open');
    expect(subjects.sessionClose).toBe('va.v1.session.close');
    expect(subjects.ctxGet).toBe('va.v1.ctx.get');
  });

  it('every session channel subject ends with the channel name', () => {
    for (const ch of Object.values(channels)) {
      if (ch.scope === 'session') expect(ch.subject(sid)).toBe(`va.v1.sess.s-1.${ch.name}`);
    }
  });

  it.each(['a.b', 'a*', 'a>', '', 'with space', 'x'.repeat(65), 'tab\t'])('rejects session id %j', (bad) => {
    expect(() => sessionId(bad)).toThrow();
    // Even a forged (cast) id cannot make a subject.
    expect(() => subjects.turn(bad as SessionId)).toThrow(/invalid session id/);
  });

  it('parses session subjects and refuses others', () => {
    expect(parseSessionSubject('va.v1.sess.s-1.reply.fast')).toEqual({ sessionId: 's-1', leaf: 'reply.fast' });
    expect(parseSessionSubject('va.v1.session.open')).toBeUndefined();
    expect(parseSessionSubject('va.v1.sess.*.turn')).toBeUndefined();
    expect(parseSessionSubject('other.v1.sess.s-1.turn')).toBeUndefined();
  });
});

describe('schemas', () => {
  it('round-trips every message through JSON', () => {
    const samples = [
      [channels.sessionOpen.schema, { sessionId: 's-1', config: { language: 'en-US', sampleRate: 16000 } }],
      [channels.vad.schema, { kind: 'start', atMs: 120 }],
      [
        channels.transcript.schema,
        { text: 'hello', final: true, stable: true, confidence: 0.9, startMs: 0, endMs: 500 },
      ],
      [channels.turn.schema, { turnId: 't1', kind: 'end', text: 'hello', eouProb: 0.8, speechEndMs: 500 }],
      [channels.replyFast.schema, { turnId: 't1', seq: 0, delta: 'Sure,', done: false }],
      [channels.playout.schema, { turnId: 't1', playedMs: 900, spokenText: 'Sure', done: true, interrupted: true }],
      [channels.control.schema, { kind: 'cancel', turnId: 't1', reason: 'barge-in' }],
      [channels.error.schema, { stage: 'stt', code: 'bad-audio', message: 'odd byte count' }],
      [requests.ctxGet.schema, { sessionId: 's-1', maxTokens: 2000 }],
      [requests.ctxGet.reply, { messages: [{ role: 'user', content: 'hi' }], summary: null }],
    ] as const;
    for (const [schema, value] of samples) {
      expect(schema.parse(JSON.parse(JSON.stringify(value)))).toEqual(value);
    }
  });

  it('accepts per-session turn tunables and refuses unknown or out-of-range ones', () => {
    const ok = SessionOpen.parse({ sessionId: 's-1', config: { turn: { minDelayMs: 200, endpointing: 'fixed' } } });
    expect(ok.config.turn).toEqual({ minDelayMs: 200, endpointing: 'fixed' });
    expect(SessionOpen.safeParse({ sessionId: 's', config: { turn: { minDelayMs: -1 } } }).success).toBe(false);
    expect(SessionOpen.safeParse({ sessionId: 's', config: { turn: { patience: 3 } } }).success).toBe(false);
  });

  it('applies session config defaults', () => {
    expect(SessionOpen.parse({ sessionId: 's-1', config: {} }).config).toEqual({
      language: 'en-US',
      sampleRate: 16000,
    });
  });

  it('rejects wrong types, unknown keys, out-of-range and oversized values', () => {
    expect(Turn.safeParse({ turnId: 't1', kind: 'end', text: 5, eouProb: 0.5, speechEndMs: 1 }).success).toBe(false);
    expect(Turn.safeParse({ turnId: 't1', kind: 'stop', text: '', eouProb: 0.5, speechEndMs: 1 }).success).toBe(false);
    expect(Turn.safeParse({ turnId: 't.1', kind: 'end', text: '', eouProb: 0.5, speechEndMs: 1 }).success).toBe(false);
    expect(Turn.safeParse({ turnId: 't1', kind: 'end', text: '', eouProb: 1.5, speechEndMs: 1 }).success).toBe(false);
    expect(
      Turn.safeParse({
        turnId: 't1',
        kind: 'end',
        text: 'x'.repeat(LIMITS.textChars + 1),
        eouProb: 0.5,
        speechEndMs: 1,
      }).success,
    ).toBe(false);
    expect(
      Turn.safeParse({ turnId: 't1', kind: 'end', text: '', eouProb: 0.5, speechEndMs: 1, extra: 1 }).success,
    ).toBe(false);
    expect(
      Transcript.safeParse({ text: 'a', final: true, stable: true, confidence: 1, startMs: 10, endMs: 5 }).success,
    ).toBe(false);
    expect(SessionOpen.safeParse({ sessionId: 'a>b', config: {} }).success).toBe(false);
    expect(SessionOpen.safeParse({ sessionId: 's', config: { sampleRate: 44100 } }).success).toBe(false);
  });
});

describe('audio frame codec', () => {
  const samples = Int16Array.from({ length: 320 }, (_, i) => ((i * 97) % 65536) - 32768);
  /** Where the samples start: the header length field. */
  const headerLength = (data: Uint8Array) => data[2]! | (data[3]! << 8);

  it('round-trips samples and metadata', () => {
    const data = encodeAudioFrame({
      samples,
      sampleRate: 16000,
      seq: 7,
      tsMs: 140.5,
      turnId: 't1',
      source: 'deep',
      textOffset: 12,
    });
    expect(data[0]).toBe(AUDIO_FORMAT_V1);
    expect(data.byteLength).toBe(headerLength(data) + 640);
    const dec = decodeAudioFrame(data);
    expect(Array.from(dec.samples)).toEqual(Array.from(samples));
    expect(dec).toMatchObject({ sampleRate: 16000, seq: 7, tsMs: 140.5, turnId: 't1', source: 'deep', textOffset: 12 });
    const bare = decodeAudioFrame(encodeAudioFrame({ samples, sampleRate: 48000, seq: 0, tsMs: 0 }));
    expect(bare).toEqual({ samples, sampleRate: 48000, seq: 0, tsMs: 0 });
  });

  it('carries the text a frame speaks, of any length up to its bound, samples still at an even offset', () => {
    for (const text of ['é', 'It is noon.', '名前は?', 'x'.repeat(MAX_FRAME_TEXT_BYTES)]) {
      const data = encodeAudioFrame({
        samples,
        sampleRate: 16000,
        seq: 2,
        tsMs: 40,
        turnId: 't1',
        source: 'fast',
        text,
      });
      expect(headerLength(data) % 2).toBe(0);
      expect(decodeAudioFrame(data)).toMatchObject({ turnId: 't1', source: 'fast', text, samples });
    }
    expect(
      decodeAudioFrame(encodeAudioFrame({ samples, sampleRate: 16000, seq: 0, tsMs: 0, text: '' })),
    ).not.toHaveProperty('text');
    expect(() =>
      encodeAudioFrame({ samples, sampleRate: 16000, seq: 0, tsMs: 0, text: 'x'.repeat(MAX_FRAME_TEXT_BYTES + 1) }),
    ).toThrow(/exceeds/);
    const good = encodeAudioFrame({ samples, sampleRate: 16000, seq: 0, tsMs: 0, turnId: 'ab', text: 'hi' });
    const overrun = good.slice();
    overrun[28] = 0xff; // text length far past the header
    expect(() => decodeAudioFrame(overrun)).toThrow(/overruns/);
    const badUtf8 = good.slice();
    badUtf8[30] = 0xff;
    expect(() => decodeAudioFrame(badUtf8)).toThrow(/UTF-8/);
  });

  it('is little-endian on the wire, samples at an even offset', () => {
    for (const turnId of [undefined, 'a', 'ab']) {
      const data = encodeAudioFrame({ samples: Int16Array.of(0x0102), sampleRate: 16000, seq: 0, tsMs: 0, turnId });
      expect(headerLength(data) % 2).toBe(0);
      expect(Array.from(data.subarray(headerLength(data)))).toEqual([0x02, 0x01]);
    }
  });

  it('decodes from a view into a larger buffer, and copies the samples', () => {
    const data = encodeAudioFrame({ samples, sampleRate: 16000, seq: 1, tsMs: 0 });
    const big = new Uint8Array(data.byteLength + 3);
    big.set(data, 3);
    const dec = decodeAudioFrame(big.subarray(3));
    expect(Array.from(dec.samples)).toEqual(Array.from(samples));
    big.fill(0);
    expect(Array.from(dec.samples)).toEqual(Array.from(samples));
  });

  it('skips a longer header from a newer sender', () => {
    const data = encodeAudioFrame({ samples, sampleRate: 16000, seq: 3, tsMs: 60 });
    const longer = new Uint8Array(data.byteLength + 4);
    const h = headerLength(data);
    longer.set(data.subarray(0, h));
    longer.set(data.subarray(h), h + 4);
    longer[2] = h + 4;
    expect(decodeAudioFrame(longer)).toMatchObject({ seq: 3, tsMs: 60, samples });
  });

  it('rejects malformed frames', () => {
    const good = encodeAudioFrame({ samples, sampleRate: 16000, seq: 1, tsMs: 0, turnId: 'abc' });
    const patched = (at: number, ...bytes: number[]) => {
      const copy = good.slice();
      copy.set(bytes, at);
      return copy;
    };
    expect(() => decodeAudioFrame(new Uint8Array(0))).toThrow(/empty/);
    expect(() => decodeAudioFrame(new Uint8Array(3))).toThrow(AudioFrameError);
    expect(() => decodeAudioFrame(patched(0, 0x7b))).toThrow(/unknown audio format/);
    expect(() => decodeAudioFrame(patched(4, 0x44, 0xac, 0, 0))).toThrow(/sample rate 44100/);
    expect(() => decodeAudioFrame(patched(2, 0xff, 0xff))).toThrow(/header length/);
    expect(() => decodeAudioFrame(patched(2, 27, 0))).toThrow(/header length/);
    expect(() => decodeAudioFrame(patched(24, 9))).toThrow(/source/);
    expect(() => decodeAudioFrame(patched(26, 0x2e))).toThrow(/turn id/);
    expect(() => decodeAudioFrame(patched(12, 0, 0, 0, 0, 0, 0, 0xf8, 0x7f))).toThrow(/tsMs/);
    expect(() => decodeAudioFrame(good.subarray(0, good.byteLength - 1))).toThrow(/odd byte count/);
    // 300 ms at 16 kHz: larger than any frame the pipeline should carry.
    expect(() => encodeAudioFrame({ samples: new Int16Array(4800), sampleRate: 16000, seq: 0, tsMs: 0 })).toThrow(
      /exceeds/,
    );
    expect(() => encodeAudioFrame({ samples, sampleRate: 16000, seq: -1, tsMs: 0 })).toThrow(/seq/);
    expect(() => encodeAudioFrame({ samples, sampleRate: 16000, seq: 0, tsMs: 0, turnId: 'a.b' })).toThrow(/turn/);
  });
});
