import { describe, expect, it } from 'vitest';
import type { listen } from '@deepgram/sdk';
import { SocketTranscript, StreamClock } from '../src/stt/deepgram-transcript.js';
import { resampledInput } from '../src/stt/resampled-input.js';
import type { AudioChunk, TranscriptEvent } from '../src/types.js';

async function* from(chunks: AudioChunk[]): AsyncGenerator<AudioChunk> {
  yield* chunks;
}

async function all<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

describe('resampledInput', () => {
  it('passes audio at the rate through, dating chunks without tsMs after the one before', async () => {
    const samples = new Int16Array(160).fill(100);
    const out = await all(
      resampledInput(
        from([
          { samples, sampleRate: 16000, tsMs: 1000 },
          { samples, sampleRate: 16000 },
        ]),
        16000,
      ),
    );
    expect(out.map(({ startMs, endMs }) => [startMs, endMs])).toEqual([
      [1000, 1010],
      [1010, 1020],
    ]);
    expect(out[0]!.samples).toBe(samples);
  });

  it('resamples another rate, keeping the span of the input chunk', async () => {
    const chunks = Array.from({ length: 10 }, (_, i) => ({
      samples: new Int16Array(480).fill(1000),
      sampleRate: 48000,
      tsMs: i * 10,
    }));
    const out = await all(resampledInput(from(chunks), 16000));
    const total = out.reduce((n, { samples }) => n + samples.length, 0);
    expect(total).toBeGreaterThan(1200);
    expect(total).toBeLessThanOrEqual(1600);
    for (const { startMs, endMs } of out) expect(endMs - startMs).toBe(10);
  });
});

describe('StreamClock', () => {
  it('maps stream time to the session clock across a jump in the input', () => {
    const clock = new StreamClock();
    clock.sent(5000, 100);
    clock.sent(5100, 100);
    // 2 s of input not sent on this socket (dropped while reconnecting).
    clock.sent(7200, 100);
    expect(clock.toSession(0.05)).toBe(5050);
    expect(clock.toSession(0.15)).toBe(5150);
    expect(clock.toSession(0.25)).toBe(7250);
  });
});

type Word = listen.ListenV1Results.Channel.Alternatives.Item.Words.Item;

function results(isFinal: boolean, words: [string, number, number][]): listen.ListenV1Results {
  const items: Word[] = words.map(([word, start, end]) => ({ word, start, end, confidence: 0.9 }));
  return {
    type: 'Results',
    channel_index: [0, 1],
    start: words[0]?.[1] ?? 0,
    duration: 1,
    is_final: isFinal,
    channel: {
      alternatives: [{ transcript: words.map(([w]) => w).join(' '), confidence: 0.9, words: items }],
    },
    metadata: { request_id: '', model_uuid: '', model_info: { name: '', version: '', arch: '' } },
  };
}

describe('SocketTranscript', () => {
  const transcript = () => {
    const events: TranscriptEvent[] = [];
    const t = new SocketTranscript((e) => events.push(e));
    t.clock.sent(1000, 5000);
    return { t, events };
  };

  it('gives partials and finals on the session clock', () => {
    const { t, events } = transcript();
    t.results(results(false, [['hello', 0.5, 0.9]]));
    t.results(
      results(true, [
        ['hello', 0.5, 0.9],
        ['there', 1.0, 1.4],
      ]),
    );
    expect(events).toEqual([
      { text: 'hello', final: false, stable: false, confidence: 0.9, startMs: 1500, endMs: 1900 },
      { text: 'hello there', final: true, stable: true, confidence: 0.9, startMs: 1500, endMs: 2400 },
    ]);
  });

  it('turns a partial left without a final into one, and a later final says only the words after it', () => {
    const { t, events } = transcript();
    t.results(results(false, [['hello', 0.5, 0.9]]));
    t.flushPending();
    t.flushPending(); // nothing pending any more
    t.results(
      results(true, [
        ['hello', 0.5, 0.9],
        ['there', 1.0, 1.4],
      ]),
    );
    expect(events.map((e) => [e.text, e.final])).toEqual([
      ['hello', false],
      ['hello', true],
      ['there', true],
    ]);
    expect(events[2]!.startMs).toBe(2000);
  });

  it('gives nothing for a silent final', () => {
    const { t, events } = transcript();
    t.results(results(true, []));
    t.flushPending();
    expect(events).toEqual([]);
  });
});
