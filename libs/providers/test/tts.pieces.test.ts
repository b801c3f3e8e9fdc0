import { describe, expect, it } from 'vitest';
import { AsyncQueue, linkAbort } from '@va/stream';
import type { SpeechChunk } from '../src/types.js';
import { drainChunks, HeldChunk } from '../src/tts/chunk-queue.js';
import { Pcm16Decoder } from '../src/tts/pcm16.js';
import { SentText, SpokenOffsets } from '../src/tts/elevenlabs-offsets.js';
import { InputText } from '../src/tts/elevenlabs-input.js';
import type { WireText } from '../src/tts/elevenlabs-wire.js';

const chunk = (textOffset: number): SpeechChunk => ({ samples: new Int16Array(1), sampleRate: 1000, textOffset });

describe('HeldChunk', () => {
  it('passes each chunk on once the next arrives, and the last with the final textOffset', () => {
    const out: SpeechChunk[] = [];
    const held = new HeldChunk(out);
    expect(held.release(5)).toBe(false);
    held.hold(chunk(1));
    held.hold(chunk(2));
    expect(out.map((c) => c.textOffset)).toEqual([1]);
    expect(held.release(9)).toBe(true);
    expect(out.map((c) => c.textOffset)).toEqual([1, 9]);
    expect(held.release(9)).toBe(false);
  });
});

describe('drainChunks', () => {
  it('yields what was queued, then throws a failure that came before any abort', async () => {
    const out = new AsyncQueue<SpeechChunk>();
    let cleaned = 0;
    out.push(chunk(3));
    out.fail(new Error('boom'));
    const got: number[] = [];
    await expect(async () => {
      for await (const c of drainChunks(out, linkAbort(new AbortController().signal), () => void cleaned++)) {
        got.push(c.textOffset);
      }
    }).rejects.toThrow('boom');
    expect(got).toEqual([3]);
    expect(cleaned).toBe(1);
  });

  it('ends quietly once aborted, and awaits the cleanup', async () => {
    const out = new AsyncQueue<SpeechChunk>();
    const caller = new AbortController();
    let cleaned = false;
    const it = drainChunks(out, linkAbort(caller.signal), async () => {
      await new Promise((r) => setTimeout(r, 5));
      cleaned = true;
    });
    const first = it.next();
    caller.abort();
    out.fail(new Error('after the abort'));
    expect(await first).toEqual({ value: undefined, done: true });
    expect(cleaned).toBe(true);
  });
});

describe('Pcm16Decoder', () => {
  it('decodes little-endian samples split at odd byte boundaries', () => {
    const d = new Pcm16Decoder();
    expect([...d.push(Uint8Array.of(0x01))]).toEqual([]);
    expect([...d.push(Uint8Array.of(0x00, 0xfe, 0xff, 0x2c))]).toEqual([1, -2]);
    expect([...d.push(Uint8Array.of(0x01))]).toEqual([300]);
  });
});

describe('SentText', () => {
  it('follows aligned characters back to input offsets, tolerating added and dropped whitespace', () => {
    const t = new SentText();
    t.append('Hi ', 0);
    t.append('you.', 10); // text from input offset 10 on (a skipped segment before it)
    expect(t.inputOffsetAt(0)).toBe(0);
    expect(t.inputOffsetAt(2)).toBe(2);
    expect(t.inputOffsetAt(99)).toBe(14);
    expect(['H', 'i', ' ', ' '].map((c) => t.advance(c))).toEqual([1, 2, 3, 3]);
    expect(t.advance('o')).toBe(12); // "y" dropped: found a little ahead
    expect(t.advance('x')).toBe(12); // nothing like it: stays put
  });
});

describe('SpokenOffsets', () => {
  const opts = { sampleRate: 1000, chunkMs: 20, msPerChar: 10 };

  it('reports the characters whose timing ends within the audio played, all of them by the last chunk', () => {
    const o = new SpokenOffsets(opts);
    o.sent('Hi you', 0);
    const al = { chars: [...'Hi you'], starts: [0, 10, 20, 30, 40, 50], durations: [10, 10, 10, 10, 10, 5] };
    const chunks = o.chunks(new Int16Array(60), al);
    expect(chunks.map((c) => [c.samples.length, c.textOffset])).toEqual([
      [20, 2], // "Hi" ends at 20 ms
      [20, 4], // "Hi y" by 40 ms ("o" ends at 50)
      [20, 6],
    ]);
  });

  it('without any alignment, estimates the pace and snaps down to a flushed sentence end', () => {
    const o = new SpokenOffsets(opts);
    o.sent('One. Two.', 0);
    o.flushed(4);
    o.flushed(9);
    expect(o.anyFlushed).toBe(true);
    expect(o.chunks(new Int16Array(60), undefined).map((c) => c.textOffset)).toEqual([0, 4, 4]);
    expect(o.chunks(new Int16Array(40), undefined).map((c) => c.textOffset)).toEqual([4, 9]);
  });
});

describe('InputText', () => {
  function run(parts: string[]) {
    const sent: WireText[] = [];
    let flushes = 0;
    const offsets = new SpokenOffsets({ sampleRate: 1000, chunkMs: 20, msPerChar: 10 });
    const input = new InputText({}, offsets, { send: (m) => sent.push(m), flushed: () => flushes++ });
    for (const p of parts) input.push(p);
    input.finish();
    return { sent, flushes, text: input.text, offsets };
  }

  it('sends whole words as they come and flushes at each sentence end', () => {
    const { sent, flushes, text } = run(['Hello there. How', ' are you?']);
    expect(text).toBe('Hello there. How are you?');
    expect(sent).toEqual([{ text: 'Hello there.', flush: true }, { text: ' How are ' }, { text: 'you?', flush: true }]);
    expect(flushes).toBe(2);
  });

  it('does not send a segment with nothing to say', () => {
    const { sent, offsets } = run(['Hi. ', '... ']);
    expect(sent).toEqual([{ text: 'Hi.', flush: true }]);
    expect(offsets.anyFlushed).toBe(true);
  });
});
