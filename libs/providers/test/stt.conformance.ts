import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { dither, durationMs, type Pcm } from '@va/audio';
import { utterances, wordAccuracy } from '@va/testkit';
import { ProviderError } from '../src/errors.js';
import type { AudioChunk, STT, TranscriptEvent } from '../src/types.js';

/** What the suite says, in this order: single-utterance tests use the first, the two-utterance test both. */
export const STT_PHRASES = ['the weather is nice today', 'set an alarm for seven in the morning'] as const;

export interface SttConformanceOptions {
  /** Least word accuracy of a final against what was said (a fake: against its scripted text). Default 0.8. */
  minWordAccuracy?: number;
  /** Releases an instance after its test (e.g. LocalSTT.close). */
  dispose?: (stt: STT) => Promise<void> | void;
  /** Guard against hangs only: the longest any transcription may take. Default 20 s. */
  timeoutMs?: number;
  /**
   * Instances whose provider fails (a refused key, an unreachable server, a dropped connection), by what goes
   * wrong: a transcription must throw a typed `ProviderError`, not hang and not throw a raw SDK or socket error.
   */
  failing?: Record<string, () => Promise<STT> | STT>;
}

const LEAD_MS = 500;
const GAP_MS = 1000;
const TAIL_MS = 800;
const CHUNK_MS = 20;
/** The very long input: 12 utterances of ≈ 2 s, each followed by 3 s of quiet, ≈ 60 s in all. */
const LONG_TURNS = 12;
const LONG_PAUSE_MS = 3000;

/** The clip as 20 ms chunks on an audio clock starting at `baseMs`, as fast as they are pulled. */
async function* chunks(
  pcm: Pcm,
  baseMs = 0,
  after?: { ended?: boolean; hang?: boolean; pulled?: number; endless?: boolean },
): AsyncGenerator<AudioChunk> {
  const size = Math.round((pcm.sampleRate * CHUNK_MS) / 1000);
  for (let at = 0; at < pcm.samples.length; at += size) {
    const samples = pcm.samples.slice(at, at + size);
    if (after) after.pulled = (after.pulled ?? 0) + 1;
    yield { samples, sampleRate: pcm.sampleRate, tsMs: baseMs + (at * 1000) / pcm.sampleRate };
  }
  if (after?.hang) await new Promise(() => {}); // a live input that never ends
  // A live microphone that goes on with quiet (dithered) audio, a little faster than real time, until dropped.
  for (let ms = durationMs(pcm); after?.endless; ms += CHUNK_MS) {
    const samples = dither(new Int16Array(size), 4, ms);
    after.pulled = (after.pulled ?? 0) + 1;
    yield { samples, sampleRate: pcm.sampleRate, tsMs: baseMs + ms };
    await new Promise((resolve) => setTimeout(resolve, CHUNK_MS / 4));
  }
  if (after) after.ended = true;
}

/** Rejects if `promise` has not settled within `ms` (a hang is a failure, not a slow pass). */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: did not finish within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export async function collect(iterable: AsyncIterable<TranscriptEvent>): Promise<TranscriptEvent[]> {
  const events: TranscriptEvent[] = [];
  for await (const event of iterable) events.push(event);
  return events;
}

const finalsOf = (events: readonly TranscriptEvent[]) => events.filter((e) => e.final);

/** Every final has at least one partial since the previous final. */
function expectPartialsBeforeFinals(events: readonly TranscriptEvent[]): void {
  let partials = 0;
  for (const event of events) {
    if (!event.final) partials++;
    else {
      expect(partials, `partials before final "${event.text}"`).toBeGreaterThan(0);
      partials = 0;
    }
  }
}

/**
 * Streaming order: each utterance's partials come before its final, and times never go back — every event
 * starts no earlier than the one before it, and each final ends no earlier than the previous final.
 */
function expectStreamingOrder(events: readonly TranscriptEvent[]): void {
  let lastFinalEnd = -Infinity;
  events.forEach((event, i) => {
    const previous = events[i - 1];
    if (previous)
      expect(event.startMs, `event ${i} starts before event ${i - 1}`).toBeGreaterThanOrEqual(previous.startMs);
    expect(event.startMs).toBeLessThanOrEqual(event.endMs);
    if (event.final) {
      expect(event.endMs, `final ${i} ends before the previous final`).toBeGreaterThanOrEqual(lastFinalEnd);
      lastFinalEnd = event.endMs;
    }
  });
}

/**
 * The behaviour every STT provider must show, on flite speech framed by dithered silence. `make` returns a fresh
 * instance per test; `dispose` releases it after the test.
 */
export function describeSttConformance(
  name: string,
  make: () => Promise<STT> | STT,
  opts: SttConformanceOptions = {},
): void {
  const { minWordAccuracy = 0.8, dispose, timeoutMs = 20_000, failing = {} } = opts;
  const [first, second] = STT_PHRASES;

  describe(`STT conformance: ${name}`, () => {
    let one: Pcm; // lead-in, first phrase, tail
    let two: Pcm; // lead-in, first phrase, 1 s gap, second phrase, tail
    let oneAt48k: Pcm;
    let firstSpeechMs: number;
    let long: Pcm; // ≈ 60 s: LONG_TURNS utterances, alternating the two phrases, with pauses between
    let longSaid: string;
    const open: STT[] = [];
    const fresh = async () => {
      const stt = await make();
      open.push(stt);
      return stt;
    };
    const transcribe = (stt: STT, input: AsyncIterable<AudioChunk>, signal = new AbortController().signal) =>
      within(collect(stt.transcribe(input, signal)), timeoutMs, `${name} transcription`);

    beforeAll(async () => {
      const lead = { say: '', pauseMs: LEAD_MS };
      one = await utterances([lead, { say: first, pauseMs: TAIL_MS }]);
      two = await utterances([lead, { say: first, pauseMs: GAP_MS }, { say: second, pauseMs: TAIL_MS }]);
      oneAt48k = await utterances([lead, { say: first, pauseMs: TAIL_MS }], { sampleRate: 48000 });
      firstSpeechMs = durationMs(one) - LEAD_MS - TAIL_MS;
      const turns = Array.from({ length: LONG_TURNS }, (_, i) => ({
        say: STT_PHRASES[i % 2]!,
        pauseMs: LONG_PAUSE_MS,
      }));
      long = await utterances([lead, ...turns]);
      longSaid = turns.map((t) => t.say).join(' ');
    });

    afterEach(async () => {
      await Promise.allSettled(open.splice(0).map((stt) => dispose?.(stt)));
    });

    it('gives a final with the words said, after partials, and ends only after the input ends', async () => {
      const stt = await fresh();
      const input: { ended?: boolean } = {};
      const events = await transcribe(stt, chunks(one, 0, input));
      expect(input.ended, 'the iterable ended before its input did').toBe(true);
      const finals = finalsOf(events);
      expect(finals.length).toBeGreaterThanOrEqual(1);
      const said = finals.map((f) => f.text).join(' ');
      expect(wordAccuracy(first, said), `heard "${said}"`).toBeGreaterThanOrEqual(minWordAccuracy);
      expectPartialsBeforeFinals(events);
      expect(events.at(-1)?.final, 'the last event is a final').toBe(true);
      for (const event of events) {
        expect(event.confidence).toBeGreaterThanOrEqual(0);
        expect(event.confidence).toBeLessThanOrEqual(1);
        if (event.final) expect(event.stable).toBe(true);
      }
    });

    it('times events on the audio clock of the chunks: within the audio, startMs ≤ endMs, finals on the speech', async () => {
      const stt = await fresh();
      const baseMs = 60_000; // a session's clock is well past zero by its second turn
      const events = await transcribe(stt, chunks(one, baseMs));
      expect(events.length).toBeGreaterThan(0);
      for (const event of events) {
        expect(event.startMs, JSON.stringify(event)).toBeGreaterThanOrEqual(baseMs);
        expect(event.startMs, JSON.stringify(event)).toBeLessThanOrEqual(event.endMs);
        expect(event.endMs, JSON.stringify(event)).toBeLessThanOrEqual(baseMs + durationMs(one));
      }
      // The final's span overlaps the speech in the clip.
      const [final] = finalsOf(events);
      expect(final).toBeDefined();
      expect(final!.startMs).toBeLessThan(baseMs + LEAD_MS + firstSpeechMs);
      expect(final!.endMs).toBeGreaterThan(baseMs + LEAD_MS);
    });

    it('gives two finals, in order, for two utterances 1 s apart', async () => {
      const stt = await fresh();
      const events = await transcribe(stt, chunks(two));
      const finals = finalsOf(events);
      expect(
        finals.map((f) => f.text),
        'one final per utterance',
      ).toHaveLength(2);
      expect(wordAccuracy(first, finals[0]!.text), `heard "${finals[0]!.text}"`).toBeGreaterThanOrEqual(
        minWordAccuracy,
      );
      expect(wordAccuracy(second, finals[1]!.text), `heard "${finals[1]!.text}"`).toBeGreaterThanOrEqual(
        minWordAccuracy,
      );
      expect(finals[0]!.endMs).toBeLessThanOrEqual(finals[1]!.startMs);
      expectPartialsBeforeFinals(events);
    });

    it('recognises 48 kHz input (resampled)', async () => {
      const stt = await fresh();
      const events = await transcribe(stt, chunks(oneAt48k));
      const said = finalsOf(events)
        .map((f) => f.text)
        .join(' ');
      expect(wordAccuracy(first, said), `heard "${said}"`).toBeGreaterThanOrEqual(minWordAccuracy);
      for (const event of events) expect(event.endMs).toBeLessThanOrEqual(durationMs(oneAt48k));
    });

    it('on abort mid-stream ends promptly with nothing more, no error, and the instance works again', async () => {
      const stt = await fresh();
      const unhandled: unknown[] = [];
      const onUnhandled = (reason: unknown) => unhandled.push(reason);
      process.on('unhandledRejection', onUnhandled);
      try {
        const abort = new AbortController();
        const afterAbort: TranscriptEvent[] = [];
        let before = 0;
        // The input never ends: only the abort can end this transcription.
        const run = async () => {
          for await (const event of stt.transcribe(chunks(one, 0, { hang: true }), abort.signal)) {
            if (abort.signal.aborted) {
              afterAbort.push(event);
              continue;
            }
            before++;
            if (!event.final) {
              // A slow consumer: the adapter runs ahead meanwhile, and what it queued must not come out after abort.
              await new Promise((resolve) => setTimeout(resolve, 100));
              abort.abort();
            }
          }
        };
        await within(run(), timeoutMs, `${name} aborted transcription`);
        expect(before, 'a partial arrived before the abort').toBeGreaterThan(0);
        expect(afterAbort, 'events after abort').toEqual([]);

        const events = await transcribe(stt, chunks(one));
        const said = finalsOf(events)
          .map((f) => f.text)
          .join(' ');
        expect(wordAccuracy(first, said), `after abort heard "${said}"`).toBeGreaterThanOrEqual(minWordAccuracy);
        await new Promise((resolve) => setTimeout(resolve, 50)); // let stray rejections surface
        expect(unhandled).toEqual([]);
      } finally {
        process.off('unhandledRejection', onUnhandled);
      }
    });

    it('with an already aborted signal ends at once without events', async () => {
      const stt = await fresh();
      const abort = new AbortController();
      abort.abort();
      expect(await transcribe(stt, chunks(one, 0, { hang: true }), abort.signal)).toEqual([]);
    });

    it('rethrows an error of its input', async () => {
      const stt = await fresh();
      async function* broken(): AsyncGenerator<AudioChunk> {
        yield* chunks({ samples: one.samples.slice(0, 16000), sampleRate: one.sampleRate });
        throw new Error('microphone unplugged');
      }
      await expect(transcribe(stt, broken())).rejects.toThrow('microphone unplugged');
    });

    it('streams in order: partials before their final, times never going back', async () => {
      const stt = await fresh();
      const events = await transcribe(stt, chunks(two));
      expect(finalsOf(events)).toHaveLength(2);
      expectPartialsBeforeFinals(events);
      expectStreamingOrder(events);
    });

    it('says nothing and ends without error for an empty input', async () => {
      const stt = await fresh();
      async function* empty(): AsyncGenerator<AudioChunk> {}
      expect(await transcribe(stt, empty())).toEqual([]);
    });

    it('on abort stops all activity: it reads no more input, and nothing comes later', async () => {
      const stt = await fresh();
      const abort = new AbortController();
      // A live input that goes on (quiet) after the speech: only the abort ends it.
      const input: { pulled?: number; endless: boolean } = { endless: true };
      const seen: TranscriptEvent[] = [];
      const iterator = stt.transcribe(chunks(one, 0, input), abort.signal)[Symbol.asyncIterator]();
      const run = async () => {
        for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
          seen.push(next.value);
          if (!abort.signal.aborted) abort.abort();
        }
      };
      await within(run(), timeoutMs, `${name} aborted transcription`);
      expect(seen.length, 'nothing after the abort but what was already being handed over').toBeLessThanOrEqual(1);
      const pulled = input.pulled ?? 0;
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect((input.pulled ?? 0) - pulled, 'input chunks read after abort').toBeLessThanOrEqual(1);
      expect((await iterator.next()).done, 'the iterator stays done').toBe(true);
    });

    it('transcribes a very long input (≈ 60 s, 12 utterances) to the end, in order', async () => {
      const stt = await fresh();
      const events = await within(
        collect(stt.transcribe(chunks(long), new AbortController().signal)),
        timeoutMs * 3,
        `${name} long transcription`,
      );
      const finals = finalsOf(events);
      expect(finals.length, 'about a final per utterance').toBeGreaterThanOrEqual(LONG_TURNS * 0.75);
      const said = finals.map((f) => f.text).join(' ');
      expect(wordAccuracy(longSaid, said), `heard "${said}"`).toBeGreaterThanOrEqual(minWordAccuracy);
      expectStreamingOrder(events);
      // The last utterance is heard where it is: in the last ≈ 5 s of the input.
      expect(finals.at(-1)!.endMs).toBeGreaterThan(durationMs(long) - LONG_PAUSE_MS - 3000);
      expect(finals.at(-1)!.endMs).toBeLessThanOrEqual(durationMs(long));
    }, 90_000);

    for (const [what, makeFailing] of Object.entries(failing)) {
      it(`throws a typed ProviderError, rather than hangs, when ${what}`, async () => {
        const stt = await makeFailing();
        open.push(stt);
        const error = await transcribe(stt, chunks(one)).then(
          () => undefined,
          (err: unknown) => err,
        );
        expect(error, 'the transcription failed').toBeDefined();
        expect(error).toBeInstanceOf(ProviderError);
        expect((error as ProviderError).provider).toBe(stt.provider);
      });
    }
  });
}
