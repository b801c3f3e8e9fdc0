import { describe, expect, it } from 'vitest';
import { concat, durationMs, rmsDbfs, samplesForMs } from '@va/audio';
import { ProviderError, type ProviderErrorKind } from '../src/errors.js';
import type { SpeechChunk, TTS } from '../src/types.js';

/** The reply the suite streams, as an LLM would: the first sentence completes inside the third delta. */
export const TTS_DELTAS = ['Sure', ', let me', ' check that. The answer is', ' forty two.'] as const;
export const TTS_TEXT = TTS_DELTAS.join('');
/** Where the first sentence ends (just past its full stop). */
const FIRST_END = TTS_TEXT.indexOf('that.') + 'that.'.length;

export interface TtsConformanceOptions {
  /** Loudness floor of the whole output. Default −40 dBFS. */
  minRmsDbfs?: number;
  /** Plausible pace, ms of audio per character of input. Default [30, 150] (flite speaks ~60). */
  msPerChar?: [number, number];
  /** Processes the adapter has running (e.g. flite children); checked to be 0 once an aborted stream has ended. */
  liveProcesses?: () => number;
  /**
   * Streams the provider side still has running for this adapter (a server's open WebSockets or responses being
   * streamed); must drop to 0 soon after an aborted or abandoned stream has ended (the provider saw the cancel).
   */
  openStreams?: () => number;
  /**
   * Adapters whose provider fails (key refused, HTTP 500, stalls, drops the connection), by what goes wrong, with
   * the error kind expected. Each must throw a typed `ProviderError`, not hang and not a raw SDK/socket error.
   */
  failing?: Record<string, { make: () => TTS | Promise<TTS>; kind?: ProviderErrorKind }>;
  /** Strings that must never appear in an error's message (API keys). */
  secrets?: readonly string[];
}

/** Three sentences of clearly different lengths (streamed as two-word deltas). */
const ORDERED = [
  'The first one is short.',
  ' The second sentence is quite a lot longer than the first one, so its audio lasts longer too.',
  ' Third comes last.',
] as const;

/** Every delta of `text`, two words at a time (as an LLM streams). */
function wordDeltas(text: string): string[] {
  const parts = text.split(/(?<=\s)/);
  const out: string[] = [];
  for (let i = 0; i < parts.length; i += 2) out.push(parts.slice(i, i + 2).join(''));
  return out;
}

/** Hang guard, not a performance assertion: a broken adapter fails the test instead of stalling the suite. */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export async function* deltas(...parts: string[]): AsyncGenerator<string> {
  for (const p of parts) yield p;
}

export async function collect(tts: TTS, text: AsyncIterable<string>, signal = new AbortController().signal) {
  return within(
    (async () => {
      const out: SpeechChunk[] = [];
      for await (const c of tts.synthesize(text, signal)) out.push(c);
      return out;
    })(),
    30_000,
    'synthesize',
  );
}

export function describeTtsConformance(name: string, make: () => TTS | Promise<TTS>, opts: TtsConformanceOptions = {}) {
  const [minPace, maxPace] = opts.msPerChar ?? [30, 150];

  describe(`TTS conformance: ${name}`, () => {
    it('speaks streamed deltas: loud enough, plausible length, in chunks of at most 20 ms', async () => {
      const tts = await make();
      const chunks = await collect(tts, deltas(...TTS_DELTAS));
      expect(chunks.length).toBeGreaterThan(0);
      for (const c of chunks) {
        expect(c.sampleRate).toBe(tts.sampleRate);
        expect(c.samples.length).toBeGreaterThan(0);
        expect(c.samples.length).toBeLessThanOrEqual(samplesForMs(20, tts.sampleRate));
      }
      const all = concat(chunks, tts.sampleRate);
      expect(rmsDbfs(all.samples)).toBeGreaterThan(opts.minRmsDbfs ?? -40);
      const pace = durationMs(all) / TTS_TEXT.length;
      expect(pace).toBeGreaterThan(minPace);
      expect(pace).toBeLessThan(maxPace);
    });

    it('reports textOffset non-decreasing, exact at the sentence end, ending at the text length', async () => {
      const tts = await make();
      const offsets = (await collect(tts, deltas(...TTS_DELTAS))).map((c) => c.textOffset);
      for (let i = 1; i < offsets.length; i++) expect(offsets[i]!).toBeGreaterThanOrEqual(offsets[i - 1]!);
      expect(offsets[0]!).toBeGreaterThanOrEqual(0);
      expect(offsets.at(-1)).toBe(TTS_TEXT.length);
      // The first sentence is its own segment: its end is reported exactly, mid-stream.
      expect(offsets).toContain(FIRST_END);
      expect(offsets.filter((o) => o === TTS_TEXT.length).length).toBeLessThan(offsets.length / 2);
    });

    it('gives first audio before the input has ended, once the first sentence is complete', async () => {
      const tts = await make();
      let open!: (by: string) => void;
      const gate = new Promise<string>((resolve) => (open = resolve));
      const guard = setTimeout(() => open('timeout'), 10_000);
      async function* source() {
        yield* deltas(...TTS_DELTAS.slice(0, -1));
        await gate; // the rest of the reply only comes once audio has come out
        yield TTS_DELTAS.at(-1)!;
      }
      const chunks: SpeechChunk[] = [];
      for await (const c of tts.synthesize(source(), new AbortController().signal)) {
        if (chunks.length === 0) open('first chunk');
        chunks.push(c);
      }
      clearTimeout(guard);
      expect(await gate).toBe('first chunk');
      expect(chunks[0]!.textOffset).toBeLessThanOrEqual(FIRST_END);
      expect(chunks.at(-1)!.textOffset).toBe(TTS_TEXT.length);
    });

    it('stops at once on abort mid-stream, without throwing and leaving nothing running', async () => {
      const tts = await make();
      const ac = new AbortController();
      const long = Array.from({ length: 60 }, (_, i) => `word${i % 7}`).join(' ');
      async function* source() {
        yield `Sure, let me check that. ${long}. `;
        // Then the LLM stalls; the source ends only with the turn (bounded, so a broken adapter cannot hang it).
        await new Promise((resolve) => {
          ac.signal.addEventListener('abort', resolve, { once: true });
          setTimeout(resolve, 10_000).unref();
        });
      }
      let before = 0;
      let after = 0;
      await within(
        (async () => {
          for await (const _ of tts.synthesize(source(), ac.signal)) {
            if (ac.signal.aborted) {
              after++;
              continue;
            }
            before++;
            if (opts.liveProcesses) await waitUntil(() => opts.liveProcesses!() > 0, 'a synthesis process to run');
            ac.abort();
          }
        })(),
        5_000,
        'aborted stream to end',
      );
      expect(before).toBe(1);
      expect(after).toBe(0);
      if (opts.liveProcesses) expect(opts.liveProcesses()).toBe(0);
      if (opts.openStreams) await waitUntil(() => opts.openStreams!() === 0, 'the provider to see the cancel', 2_000);
    });

    it('gives no chunks for empty or unspeakable input', async () => {
      const tts = await make();
      // The last one is cut into segments by length alone, none of them speakable.
      for (const parts of [[], [''], ['  ', '\n'], ['...', ' !? ', '—'], ['- '.repeat(300)]]) {
        expect(await collect(tts, deltas(...parts)), JSON.stringify(parts)).toEqual([]);
      }
    });

    it('starts very long unpunctuated input with a short first segment', async () => {
      const tts = await make();
      const words = Array.from({ length: 1000 }, (_, i) => ['alpha', 'bravo', 'charlie', 'delta'][i % 4]).join(' ');
      const ac = new AbortController();
      const first: SpeechChunk[] = [];
      for await (const c of tts.synthesize(deltas(words), ac.signal)) {
        first.push(c);
        if (first.length === 10) break; // leaving early must end the stream too
      }
      expect(first).toHaveLength(10);
      expect(first.at(-1)!.textOffset).toBeLessThan(300);
      if (opts.liveProcesses) expect(opts.liveProcesses()).toBe(0);
      if (opts.openStreams) await waitUntil(() => opts.openStreams!() === 0, 'the provider to see the cancel', 2_000);
    });

    it('speaks sentences in order: each sentence end is reached after about its share of the audio', async () => {
      const tts = await make();
      const text = ORDERED.join('');
      const chunks = await collect(tts, deltas(...wordDeltas(text)));
      let end = 0;
      for (const sentence of ORDERED) {
        end += sentence.length;
        // Audio up to and including the first chunk that reports this sentence as spoken.
        const upTo = chunks.findIndex((c) => c.textOffset >= end);
        expect(upTo, `a chunk reaches offset ${end}`).toBeGreaterThanOrEqual(0);
        const ms = durationMs(concat(chunks.slice(0, upTo + 1), tts.sampleRate));
        expect(ms / end, `pace up to offset ${end}`).toBeGreaterThan(minPace);
        expect(ms / end, `pace up to offset ${end}`).toBeLessThan(maxPace);
      }
      expect(chunks.at(-1)!.textOffset).toBe(text.length);
    });

    it('speaks very long input (30 sentences) to the end, reporting progress all along', async () => {
      const tts = await make();
      const numbers = 'one two three four five six seven eight nine ten'.split(' ');
      const text = Array.from({ length: 30 }, (_, i) => `Line ${numbers[i % 10]} of the list is here. `).join('');
      const chunks = await collect(tts, deltas(...wordDeltas(text)));
      const offsets = chunks.map((c) => c.textOffset);
      for (let i = 1; i < offsets.length; i++) expect(offsets[i]!).toBeGreaterThanOrEqual(offsets[i - 1]!);
      expect(offsets.at(-1)).toBe(text.length);
      expect(new Set(offsets).size).toBeGreaterThanOrEqual(30);
      const pace = durationMs(concat(chunks, tts.sampleRate)) / text.trim().length;
      expect(pace).toBeGreaterThan(minPace);
      expect(pace).toBeLessThan(maxPace);
    });

    it('speaks non-ASCII text; offsets count UTF-16 code units of the input', async () => {
      const tts = await make();
      const parts = ['Grüße, ', '東京! ', 'Ça va très ', 'bien, merci. ', 'À bientôt 👋.'];
      const text = parts.join('');
      const chunks = await collect(tts, deltas(...parts));
      expect(chunks.length).toBeGreaterThan(0);
      expect(rmsDbfs(concat(chunks, tts.sampleRate).samples)).toBeGreaterThan(opts.minRmsDbfs ?? -40);
      const offsets = chunks.map((c) => c.textOffset);
      for (let i = 1; i < offsets.length; i++) expect(offsets[i]!).toBeGreaterThanOrEqual(offsets[i - 1]!);
      expect(offsets.at(-1)).toBe(text.length);
      expect(offsets).toContain(text.indexOf('merci.') + 'merci.'.length);
    });

    for (const [what, failing] of Object.entries(opts.failing ?? {})) {
      it(`throws a typed ProviderError${failing.kind ? ` (${failing.kind})` : ''}, rather than hangs, when ${what}`, async () => {
        const tts = await failing.make();
        const err: unknown = await collect(tts, deltas(...TTS_DELTAS)).then(
          () => new Error('no error'),
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(ProviderError);
        const pe = err as ProviderError;
        expect(pe.provider).toBe(tts.provider);
        if (failing.kind) expect(pe.kind).toBe(failing.kind);
        for (const secret of opts.secrets ?? []) expect(pe.message).not.toContain(secret);
        if (opts.openStreams) await waitUntil(() => opts.openStreams!() === 0, 'the failed stream to be closed', 2_000);
      });
    }

    it('throws a failure of the text source from the iterable', async () => {
      const tts = await make();
      async function* broken() {
        yield 'Hello there. ';
        throw new Error('llm stream broke');
      }
      await expect(collect(tts, broken())).rejects.toThrow('llm stream broke');
    });
  });
}

export async function waitUntil(ok: () => boolean, what: string, ms = 5_000): Promise<void> {
  const until = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}
