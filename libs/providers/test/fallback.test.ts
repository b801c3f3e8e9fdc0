import { describe, expect, it } from 'vitest';
import { durationMs } from '@va/audio';
import {
  FakeSTT,
  FakeTTS,
  FallbackSTT,
  FallbackTTS,
  ProviderError,
  type AudioChunk,
  type SpeechChunk,
  type STT,
  type TranscriptEvent,
  type TTS,
} from '@va/providers';

const never = () => new AbortController().signal;

async function* deltas(...parts: string[]): AsyncIterable<string> {
  for (const p of parts) {
    await new Promise((r) => setTimeout(r, 5));
    yield p;
  }
}

async function speak(tts: TTS, ...parts: string[]): Promise<SpeechChunk[]> {
  const out: SpeechChunk[] = [];
  for await (const c of tts.synthesize(deltas(...parts), never())) out.push(c);
  return out;
}

/** A TTS whose provider is down: it reads some text, then fails before any audio. */
class DownTTS implements TTS {
  readonly provider = 'down';
  readonly sampleRate = 16000;
  calls = 0;
  synthesize(text: AsyncIterable<string>): AsyncIterable<SpeechChunk> {
    this.calls++;
    return {
      [Symbol.asyncIterator]: () => ({
        next: async () => {
          for await (const _ of text) break;
          throw new ProviderError('down', 'server', 'HTTP 500');
        },
      }),
    };
  }
}

describe('FallbackTTS', () => {
  it('fails over before the first audio: the next provider speaks the whole text, and says so on each chunk', async () => {
    const down = new DownTTS();
    const backup = new FakeTTS({ msPerChar: 20 });
    const failovers: string[] = [];
    const tts = new FallbackTTS([down, backup], {
      ttfbTimeoutMs: 1_000,
      onFailover: (e) => failovers.push(e.provider),
    });
    const chunks = await speak(tts, 'Hello there. ', 'How are you?');
    expect(backup.segments.join(' ')).toBe('Hello there. How are you?');
    expect(chunks.at(-1)!.textOffset).toBe('Hello there. How are you?'.length);
    expect(chunks.every((c) => c.servedBy?.provider === 'fake' && c.servedBy.fallback)).toBe(true);
    expect(failovers).toEqual(['down']);
    // Set aside: the next synthesis starts with the backup.
    await speak(tts, 'Again.');
    expect(down.calls).toBe(1);
  });

  it('abandons a provider whose first audio is later than the budget', async () => {
    const slow = new FakeTTS({ msPerChar: 20, ttfbMs: 5_000 });
    const quick = new FakeTTS({ msPerChar: 20 });
    const tts = new FallbackTTS([slow, quick], { ttfbTimeoutMs: 150 });
    const chunks = await speak(tts, 'Quick one.');
    expect(chunks.length).toBeGreaterThan(0);
    expect(chunks[0]!.servedBy).toEqual({ provider: 'fake', fallback: true });
    expect(slow.segments).toEqual([]);
  });

  it('resamples a fallback with another rate to the chain’s rate, keeping the duration', async () => {
    const tts = new FallbackTTS([new DownTTS(), new FakeTTS({ msPerChar: 20, sampleRate: 24000 })], {
      ttfbTimeoutMs: 1_000,
    });
    expect(tts.sampleRate).toBe(16000);
    const chunks = await speak(tts, 'Twenty four.');
    const total = chunks.reduce((ms, c) => ms + durationMs(c), 0);
    expect(chunks.every((c) => c.sampleRate === 16000)).toBe(true);
    expect(total).toBeGreaterThan('Twenty four.'.length * 20 - 40);
    expect(total).toBeLessThan('Twenty four.'.length * 20 + 40);
  });

  it('throws a typed error when every provider fails', async () => {
    const tts = new FallbackTTS([new DownTTS(), new DownTTS()], { ttfbTimeoutMs: 1_000 });
    await expect(speak(tts, 'Nobody home.')).rejects.toBeInstanceOf(ProviderError);
  });
});

/** Audio chunks of 100 ms on the session clock. */
async function* audio(count: number): AsyncIterable<AudioChunk> {
  for (let i = 0; i < count; i++) {
    await new Promise((r) => setTimeout(r, 2));
    yield { samples: new Int16Array(1600), sampleRate: 16000, tsMs: i * 100 };
  }
}

/** An STT that transcribes each chunk's time, then drops the connection after `failAfter` chunks. */
class DroppingSTT implements STT {
  readonly sampleRate = 16000;
  seen: number[] = [];
  constructor(
    readonly provider: string,
    private readonly failAfter = Infinity,
  ) {}
  async *transcribe(chunks: AsyncIterable<AudioChunk>): AsyncIterable<TranscriptEvent> {
    let n = 0;
    for await (const c of chunks) {
      if (n++ >= this.failAfter) throw new ProviderError(this.provider, 'connection', 'socket closed');
      this.seen.push(c.tsMs!);
      yield { text: `${c.tsMs}`, final: true, stable: true, confidence: 1, startMs: c.tsMs!, endMs: c.tsMs! + 100 };
    }
  }
}

describe('FallbackSTT', () => {
  it('goes on with the next provider when one drops mid-stream, replaying recent audio on the same clock', async () => {
    const primary = new DroppingSTT('primary', 10);
    const backup = new DroppingSTT('backup');
    const stt = new FallbackSTT([primary, backup], { replayMs: 300 });
    const events: TranscriptEvent[] = [];
    for await (const e of stt.transcribe(audio(30), never())) events.push(e);
    expect(primary.seen).toEqual(Array.from({ length: 10 }, (_, i) => i * 100));
    // The backup heard the last 300 ms again, then the rest: nothing said near the drop is lost.
    expect(backup.seen[0]).toBeLessThanOrEqual(700);
    expect(backup.seen.at(-1)).toBe(2900);
    expect(events.filter((e) => e.servedBy?.provider === 'primary')).toHaveLength(10);
    expect(events.at(-1)!.servedBy).toEqual({ provider: 'backup', fallback: true });
  });

  it('throws a typed error when every provider fails, and ends quietly on abort', async () => {
    const stt = new FallbackSTT([new DroppingSTT('a', 0), new DroppingSTT('b', 0)]);
    const run = async () => {
      for await (const _ of stt.transcribe(audio(5), never())) void _;
    };
    await expect(run()).rejects.toBeInstanceOf(ProviderError);
    const controller = new AbortController();
    const ok = new FallbackSTT([new FakeSTT()]);
    controller.abort();
    const out: TranscriptEvent[] = [];
    for await (const e of ok.transcribe(audio(3), controller.signal)) out.push(e);
    expect(out).toEqual([]);
  });
});
