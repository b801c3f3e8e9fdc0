import { mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { durationMs, rmsDbfs } from '@va/audio';
import { utterances, waitFor, wordAccuracy } from '@va/testkit';
import { createProvider, providerNames } from '../src/registry.js';
import {
  closeDecoderPools,
  configureDecoderPool,
  decoderPoolStats,
  FakeSTT,
  LocalSTT,
  preloadDecoder,
  SpeechGate,
  TimedSTT,
  type FakeResponder,
} from '../src/stt/index.js';
import { FallbackSTT } from '../src/fallback-streams.js';
import type { AudioChunk, STT, TranscriptEvent } from '../src/types.js';
import { collect, describeSttConformance, STT_PHRASES, within } from './stt.conformance.js';

/** All events of a transcription; a hang fails after 20 s instead of stalling the suite. */
const transcribeAll = (stt: STT, input: AsyncIterable<AudioChunk>, signal = new AbortController().signal) =>
  within(collect(stt.transcribe(input, signal)), 20_000, `${stt.provider} transcription`);

const closeIfLocal = async (stt: STT) => {
  if (stt instanceof LocalSTT) await stt.close();
};

/**
 * A FakeSTT responder that "hears" like a recogniser: utterances found by energy (above −50 dBFS, ended by
 * 300 ms below it), partials of the phrase's first words while speech goes on, and a final per utterance
 * saying `phrases` in order; times from the chunks' audio clock.
 */
function hearsInOrder(phrases: readonly string[]): () => FakeResponder {
  return () => {
    let heard = 0;
    let clockMs = 0;
    let speech: { startMs: number; endMs: number; partials: number } | undefined;
    let quietMs = 0;
    const event = (final: boolean): TranscriptEvent => {
      const words = (phrases[heard % phrases.length] ?? '').split(' ');
      const text = final ? words.join(' ') : words.slice(0, Math.min(words.length - 1, ++speech!.partials)).join(' ');
      return {
        text,
        final,
        stable: final,
        confidence: final ? 0.9 : 0.5,
        startMs: speech!.startMs,
        endMs: final ? speech!.endMs : clockMs,
      };
    };
    const finish = () => {
      const final = event(true);
      heard++;
      speech = undefined;
      return final;
    };
    return (chunk) => {
      if (!chunk) return speech ? finish() : undefined;
      const startMs = chunk.tsMs ?? clockMs;
      const ms = (chunk.samples.length * 1000) / chunk.sampleRate;
      clockMs = startMs + ms;
      if (rmsDbfs(chunk.samples) > -50) {
        quietMs = 0;
        speech ??= { startMs, endMs: clockMs, partials: 0 };
        speech.endMs = clockMs;
        // A partial every 200 ms of speech.
        if (Math.floor((clockMs - speech.startMs) / 200) > Math.floor((clockMs - ms - speech.startMs) / 200)) {
          return event(false);
        }
      } else if (speech && (quietMs += ms) >= 300) {
        return finish();
      }
    };
  };
}

describeSttConformance('local', () => LocalSTT.create(), { dispose: closeIfLocal });
describeSttConformance('fake', () => new FakeSTT(hearsInOrder(STT_PHRASES)));
describeSttConformance('timed', () => new TimedSTT({ texts: STT_PHRASES, minSpeechMs: 200 }));
describeSttConformance(
  'FallbackSTT (FakeSTT → TimedSTT)',
  () =>
    new FallbackSTT([new FakeSTT(hearsInOrder(STT_PHRASES)), new TimedSTT({ texts: STT_PHRASES, minSpeechMs: 200 })]),
);

async function* chunksOf(pcm: { samples: Int16Array; sampleRate: number }, ms = 20): AsyncGenerator<AudioChunk> {
  const size = (pcm.sampleRate * ms) / 1000;
  for (let at = 0; at < pcm.samples.length; at += size) {
    yield { samples: pcm.samples.slice(at, at + size), sampleRate: pcm.sampleRate, tsMs: (at * 1000) / pcm.sampleRate };
  }
}

async function* paced(count: number, everyMs: number): AsyncGenerator<AudioChunk> {
  for (let i = 0; i < count; i++) {
    yield { samples: new Int16Array(320), sampleRate: 16000, tsMs: i * 20 };
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

const ev = (text: string, final: boolean): TranscriptEvent => ({
  text,
  final,
  stable: final,
  confidence: 1,
  startMs: 0,
  endMs: 100,
});

describe('FakeSTT with a timed script', () => {
  it('emits the script at its times (from the start), in order, and ends with the input', async () => {
    const stt = new FakeSTT([
      { afterMs: 150, event: ev('hello there', true) },
      { afterMs: 50, event: ev('hello', false) },
    ]);
    const started = performance.now();
    const seen: { text: string; atMs: number }[] = [];
    const run = async () => {
      for await (const e of stt.transcribe(paced(20, 20), new AbortController().signal)) {
        seen.push({ text: e.text, atMs: performance.now() - started });
      }
    };
    await within(run(), 20_000, 'scripted fake');
    expect(seen.map((s) => s.text)).toEqual(['hello', 'hello there']);
    expect(seen[0]!.atMs).toBeGreaterThanOrEqual(49);
    expect(seen[1]!.atMs).toBeGreaterThanOrEqual(149);
    expect(stt.chunksReceived).toBe(20);
  });

  it('emits what is not yet due at once when the input ends, then ends', async () => {
    const stt = new FakeSTT([{ afterMs: 60_000, event: ev('late final', true) }]);
    const events = await transcribeAll(stt, paced(2, 1));
    expect(events.map((e) => e.text)).toEqual(['late final']);
  });

  it('reads its input while nobody pulls its events (realistic back-pressure)', async () => {
    const stt = new FakeSTT([
      { afterMs: 0, event: ev('early', false) },
      { afterMs: 60_000, event: ev('at the end', true) },
    ]);
    const iterator = stt.transcribe(paced(10, 1), new AbortController().signal)[Symbol.asyncIterator]();
    expect((await iterator.next()).value?.text).toBe('early');
    // Nobody pulls now; a fake that read its input only between yields would stop here.
    await waitFor(() => stt.chunksReceived === 10, { timeoutMs: 5000, message: 'fake stopped reading its input' });
    expect((await iterator.next()).value?.text).toBe('at the end');
    expect((await iterator.next()).done).toBe(true);
  });

  it('on abort drops what is scheduled and ends', async () => {
    const stt = new FakeSTT([
      { afterMs: 0, event: ev('hi', false) },
      { afterMs: 300, event: ev('hi there', true) },
    ]);
    const abort = new AbortController();
    const events: TranscriptEvent[] = [];
    async function* endless(): AsyncGenerator<AudioChunk> {
      yield { samples: new Int16Array(320), sampleRate: 16000 };
      await new Promise(() => {});
    }
    const run = async () => {
      for await (const e of stt.transcribe(endless(), abort.signal)) {
        events.push(e);
        abort.abort();
      }
    };
    await within(run(), 20_000, 'aborted fake');
    expect(events.map((e) => e.text)).toEqual(['hi']);
  });
});

describe('SpeechGate', () => {
  it('stays shut on quiet, opens on speech with the pre-roll before it, and closes after the hold', async () => {
    const clip = await utterances([
      { say: '', pauseMs: 1000 },
      { say: STT_PHRASES[0], pauseMs: 2000 },
    ]);
    const gate = new SpeechGate({ preRollMs: 300, holdMs: 1000 });
    const passed: { atMs: number; closed: boolean }[] = [];
    let firstPassMs: number | undefined;
    for await (const chunk of chunksOf(clip)) {
      const { pass, closed } = gate.push(chunk);
      if (pass.length > 0) firstPassMs ??= pass[0]!.tsMs;
      for (const piece of pass) passed.push({ atMs: piece.tsMs!, closed: false });
      if (closed) passed.at(-1)!.closed = true;
    }
    const speechStartMs = 1000;
    const speechEndMs = durationMs(clip) - 2000;
    // Opens at the speech, handing over ≈ 300 ms from before it.
    expect(firstPassMs).toBeGreaterThanOrEqual(speechStartMs - 400);
    expect(firstPassMs).toBeLessThanOrEqual(speechStartMs + 300); // flite starts with a little silence
    // Closes once, ≈ holdMs after the speech, and passes nothing after.
    const closes = passed.filter((p) => p.closed);
    expect(closes).toHaveLength(1);
    expect(closes[0]!.atMs).toBeGreaterThan(speechEndMs + 500); // and ends with some
    expect(closes[0]!.atMs).toBeLessThan(speechEndMs + 1300);
    expect(passed.at(-1)!.closed).toBe(true);
    expect(gate.open).toBe(false);
  });
});

describe('LocalSTT', () => {
  const open: LocalSTT[] = [];
  afterEach(async () => {
    await Promise.allSettled(open.splice(0).map((stt) => stt.close()));
  });
  const local = async () => {
    const stt = await LocalSTT.create();
    open.push(stt);
    return stt;
  };

  afterAll(() => closeDecoderPools());

  it('shares at most `max` decoders among more sessions: one is leased only while a session has sound', async () => {
    await closeDecoderPools();
    configureDecoderPool({ spare: 1, max: 2 });
    await preloadDecoder();
    expect(decoderPoolStats()).toMatchObject({ loaded: 1, leased: 0 });
    const sessions = await Promise.all(Array.from({ length: 4 }, () => local()));
    const quiet = await utterances([{ say: '', pauseMs: 2000 }]);
    // Four sessions listening to quiet hold no decoder.
    const listening = sessions.map((stt) => transcribeAll(stt, chunksOf(quiet)));
    expect(await Promise.all(listening)).toEqual([[], [], [], []]);
    expect(decoderPoolStats().leased).toBe(0);
    // The pool loads a decoder per open session up to `max`, and no more.
    await waitFor(() => decoderPoolStats().loaded === 2, { timeoutMs: 10_000, message: 'two decoders loaded' });
    expect(decoderPoolStats().loading).toBe(0);

    // Four sessions speaking at once through at most two decoders: two wait their turn, and every one is heard.
    const speech = await utterances([
      { say: '', pauseMs: 300 },
      { say: STT_PHRASES[1], pauseMs: 1500 },
    ]);
    let mostLeased = 0;
    const watch = setInterval(() => (mostLeased = Math.max(mostLeased, decoderPoolStats().leased)), 5);
    try {
      const heard = await Promise.all(sessions.map((stt) => transcribeAll(stt, chunksOf(speech))));
      for (const events of heard) {
        const said = events
          .filter((e) => e.final)
          .map((e) => e.text)
          .join(' ');
        expect(wordAccuracy(STT_PHRASES[1], said), `heard "${said}"`).toBeGreaterThanOrEqual(0.8);
      }
    } finally {
      clearInterval(watch);
    }
    expect(mostLeased).toBe(2);
    expect(decoderPoolStats()).toMatchObject({ loaded: 2, leased: 0, waiting: 0 });
    await closeDecoderPools();
  });

  it('with a spare kept, the next decoder loads while one is in use, so a new speaker never waits for a load', async () => {
    await closeDecoderPools();
    configureDecoderPool({ spare: 1, max: 4 });
    await preloadDecoder();
    expect(decoderPoolStats()).toMatchObject({ loaded: 1, loading: 0 });
    const stt = await local(); // leases the spare and gives it back
    expect(stt.modelLoadMs).toBeGreaterThan(0);
    await waitFor(() => decoderPoolStats().loaded === 2, { timeoutMs: 10_000, message: 'a new spare loaded' });
    await closeDecoderPools();
    expect(decoderPoolStats().loaded).toBe(0);
  });

  it('loads and frees decoders in parallel without opening a file each time (pocketsphinx’s global log file)', async () => {
    // Each load used to open a log file (-logfn) and swap it into pocketsphinx's process-wide log pointer,
    // closing the previous one: parallel loads closed the same FILE twice and leaked the other (one /dev/null
    // descriptor more per round, and a heap corruption that crashed the process now and then).
    const openLogs = () =>
      readdirSync('/proc/self/fd').filter((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`) === '/dev/null';
        } catch {
          return false;
        }
      }).length;
    await closeDecoderPools();
    const before = openLogs();
    for (let round = 0; round < 3; round++) {
      configureDecoderPool({ spare: 2, max: 2 });
      await preloadDecoder();
      expect(decoderPoolStats().loaded).toBe(2);
      await closeDecoderPools();
    }
    expect(openLogs()).toBe(before);
  });

  it('fails to create with a clear error when the model is missing', async () => {
    await expect(LocalSTT.create({ modelDir: '/nonexistent/model' })).rejects.toThrow(
      /pocketsphinx model not found: \/nonexistent\/model\/en-us/,
    );
  });

  it('fails to create when pocketsphinx cannot load the model files', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'bad-model-'));
    try {
      mkdirSync(path.join(dir, 'en-us'));
      for (const name of ['en-us/feat.params', 'en-us.lm.bin', 'cmudict-en-us.dict']) {
        writeFileSync(path.join(dir, name), 'not a model\n');
      }
      await expect(LocalSTT.create({ modelDir: dir })).rejects.toThrow(/could not load the model/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('surfaces a decoder worker that dies mid-stream as an error of the iterable, then recovers', async () => {
    const stt = await local();
    const speech = await utterances([
      { say: '', pauseMs: 300 },
      { say: STT_PHRASES[0], pauseMs: 500 },
    ]);
    // Reaching into the instance is the only way to kill its thread the way a native crash would.
    const leased = () => (stt as unknown as { leased?: { worker: { terminate(): Promise<number> } } }).leased?.worker;
    const run = async () => {
      for await (const e of stt.transcribe(chunksOf(speech), new AbortController().signal)) {
        if (!e.final) void leased()?.terminate();
      }
    };
    await expect(within(run(), 20_000, 'transcription with a dying worker')).rejects.toThrow(/decoder worker exited/);

    const events = await transcribeAll(stt, chunksOf(speech));
    const said = events
      .filter((e) => e.final)
      .map((e) => e.text)
      .join(' ');
    expect(wordAccuracy(STT_PHRASES[0], said), `heard "${said}"`).toBeGreaterThanOrEqual(0.8);
  });

  it('runs concurrent transcriptions on one instance one after another, reusing the loaded model', async () => {
    const stt = await local();
    const loadMs = stt.modelLoadMs;
    expect(loadMs).toBeGreaterThan(0);
    const speech = await utterances([
      { say: '', pauseMs: 300 },
      { say: STT_PHRASES[1], pauseMs: 600 },
    ]);
    const finals = (events: TranscriptEvent[]) =>
      events
        .filter((e) => e.final)
        .map((e) => e.text)
        .join(' ');
    const [a, b] = await Promise.all([transcribeAll(stt, chunksOf(speech)), transcribeAll(stt, chunksOf(speech))]);
    expect(wordAccuracy(STT_PHRASES[1], finals(a!)), finals(a!)).toBeGreaterThanOrEqual(0.8);
    expect(wordAccuracy(STT_PHRASES[1], finals(b!)), finals(b!)).toBeGreaterThanOrEqual(0.8);
    // Times of the second start from its own clock, not the first's: the streams did not interleave.
    expect(b!.every((e) => e.endMs <= durationMs(speech))).toBe(true);
    expect(stt.modelLoadMs, 'the model was not loaded again').toBe(loadMs);
  });

  it('marks a partial stable only after the same text three times in a row, and gives finals a posterior', async () => {
    const stt = await local();
    const speech = await utterances([
      { say: '', pauseMs: 300 },
      { say: STT_PHRASES[1], pauseMs: 600 },
    ]);
    const events = await transcribeAll(stt, chunksOf(speech));
    const partials = events.filter((e) => !e.final);
    partials.forEach((p, i) => {
      // A stable partial repeats the partial sent before it (its text had not changed since).
      if (p.stable) expect(partials[i - 1]?.text).toBe(p.text);
    });
    const [final] = events.filter((e) => e.final);
    expect(final!.confidence).toBeGreaterThan(0);
    expect(final!.confidence).toBeLessThanOrEqual(1);
    expect(final!.confidence).not.toBe(0.5); // the partials' constant: a real posterior was computed
  });

  it('says nothing for a silent stream, and the next stream is recognised as usual', async () => {
    const stt = await local();
    const quiet = await utterances([{ say: '', pauseMs: 1500 }]);
    expect(await transcribeAll(stt, chunksOf(quiet))).toEqual([]);
    const speech = await utterances([
      { say: '', pauseMs: 300 },
      { say: STT_PHRASES[0], pauseMs: 600 },
    ]);
    const said = (await transcribeAll(stt, chunksOf(speech)))
      .filter((e) => e.final)
      .map((e) => e.text)
      .join(' ');
    expect(wordAccuracy(STT_PHRASES[0], said), `heard "${said}"`).toBeGreaterThanOrEqual(0.8);
  });

  it('decodes digital-zero silence around speech (the adapter dithers it)', async () => {
    const stt = await local();
    const speech = await utterances([{ say: STT_PHRASES[0], pauseMs: 0 }]);
    const zeros = new Int16Array(16000);
    const samples = new Int16Array(zeros.length * 2 + speech.samples.length);
    samples.set(speech.samples, zeros.length);
    const events = await transcribeAll(stt, chunksOf({ samples, sampleRate: 16000 }));
    const said = events
      .filter((e) => e.final)
      .map((e) => e.text)
      .join(' ');
    expect(wordAccuracy(STT_PHRASES[0], said), `heard "${said}"`).toBeGreaterThanOrEqual(0.8);
    expect(
      samples.subarray(0, 100).every((s) => s === 0),
      'the caller’s buffer is not modified',
    ).toBe(true);
  });
});

describe('STT registry', () => {
  it('registers local and fake', () => {
    expect(providerNames('stt')).toEqual(expect.arrayContaining(['local', 'fake']));
  });

  it('creates local from the env and honours STT_MODEL_DIR', async () => {
    const stt = await createProvider('stt', 'local', {});
    expect(stt).toBeInstanceOf(LocalSTT);
    expect(stt.sampleRate).toBe(16000);
    await (stt as LocalSTT).close();
    await expect(createProvider('stt', 'local', { STT_MODEL_DIR: '/nonexistent' })).rejects.toThrow(
      /model not found: \/nonexistent/,
    );
  });

  it('creates fake from STT_FAKE_SCRIPT and says what is wrong with a bad one', async () => {
    const script = [{ afterMs: 0, event: { text: 'hi', final: true } }];
    const stt = await createProvider('stt', 'fake', { STT_FAKE_SCRIPT: JSON.stringify(script) });
    const events = await transcribeAll(stt, paced(1, 1));
    expect(events).toEqual([{ text: 'hi', final: true, stable: true, confidence: 1, startMs: 0, endMs: 0 }]);
    await expect(
      createProvider('stt', 'fake', { STT_FAKE_SCRIPT: '[{"afterMs": -1, "event": {"text": 1}}]' }),
    ).rejects.toThrow(/invalid STT_FAKE_SCRIPT: 0\.afterMs/);
    await expect(createProvider('stt', 'fake', { STT_FAKE_SCRIPT: '{oops' })).rejects.toThrow(/not JSON/);
  });
});
