import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { durationMs, rmsDbfs, type Pcm } from '@va/audio';
import { freePort, utterances, waitFor } from '@va/testkit';
import { ProviderError } from '../src/errors.js';
import { createProvider } from '../src/registry.js';
import { DeepgramSTT, deepgramSttFromEnv, type DeepgramSttOptions } from '../src/stt/index.js';
import type { AudioChunk, STT, TranscriptEvent } from '../src/types.js';
import { startDeepgramServer, type DeepgramServer, type DeepgramServerOptions } from '@va/testkit';
import { collect, describeSttConformance, STT_PHRASES, within } from './stt.conformance.js';

const [FIRST, SECOND] = STT_PHRASES;
const LEAD_MS = 500;
const GAP_MS = 1500;
const TAIL_MS = 800;

let server: DeepgramServer;
const extraServers: DeepgramServer[] = [];
const instances: DeepgramSTT[] = [];

beforeAll(async () => {
  server = await startDeepgramServer({ texts: STT_PHRASES });
});
afterAll(async () => {
  await server.close();
});
afterEach(async () => {
  for (const stt of instances.splice(0)) stt.close();
  await Promise.all(extraServers.splice(0).map((s) => s.close()));
});

function deepgram(over: Partial<DeepgramSttOptions> = {}, on: DeepgramServer = server): DeepgramSTT {
  const stt = new DeepgramSTT({ apiKey: on.apiKey, baseUrl: on.url, ...over });
  instances.push(stt);
  return stt;
}

async function another(opts: DeepgramServerOptions): Promise<DeepgramServer> {
  const s = await startDeepgramServer({ texts: STT_PHRASES, ...opts });
  extraServers.push(s);
  return s;
}

/** 20 ms chunks on the clip's clock; `everyMs` paces them (0: as fast as they are pulled). */
async function* chunks(
  pcm: Pcm,
  opts: { everyMs?: number; stallAtMs?: number; stallMs?: number; pulled?: { count: number } } = {},
): AsyncGenerator<AudioChunk> {
  const size = pcm.sampleRate / 50;
  for (let at = 0; at < pcm.samples.length; at += size) {
    const tsMs = (at * 1000) / pcm.sampleRate;
    if (opts.stallAtMs !== undefined && tsMs === opts.stallAtMs) {
      await new Promise((resolve) => setTimeout(resolve, opts.stallMs ?? 0));
    }
    if (opts.pulled) opts.pulled.count++;
    yield { samples: pcm.samples.slice(at, at + size), sampleRate: pcm.sampleRate, tsMs };
    if (opts.everyMs) await new Promise((resolve) => setTimeout(resolve, opts.everyMs));
  }
}

const run = (stt: STT, input: AsyncIterable<AudioChunk>, signal = new AbortController().signal) =>
  within(collect(stt.transcribe(input, signal)), 30_000, 'deepgram transcription');
const finalsOf = (events: readonly TranscriptEvent[]) => events.filter((e) => e.final);
const expectOrdered = (events: readonly TranscriptEvent[]) => {
  for (let i = 1; i < events.length; i++) expect(events[i]!.startMs).toBeGreaterThanOrEqual(events[i - 1]!.startMs);
  for (const e of events) expect(e.startMs).toBeLessThanOrEqual(e.endMs);
};

/** Where the clip is loud (10 ms frames above −45 dBFS, gaps under 300 ms bridged): the speech, ms. */
function speechSpans(pcm: Pcm): { startMs: number; endMs: number }[] {
  const spans: { startMs: number; endMs: number }[] = [];
  const frame = pcm.sampleRate / 100;
  for (let at = 0; at + frame <= pcm.samples.length; at += frame) {
    if (rmsDbfs(pcm.samples.subarray(at, at + frame)) <= -45) continue;
    const startMs = (at * 1000) / pcm.sampleRate;
    const last = spans.at(-1);
    if (last && startMs - last.endMs < 300) last.endMs = startMs + 10;
    else spans.push({ startMs, endMs: startMs + 10 });
  }
  return spans;
}

let two: Pcm; // lead, FIRST, 1.5 s gap, SECOND, tail
let firstStartMs: number; // where the speech is in `two`
let firstEndMs: number;
let secondStartMs: number;
beforeAll(async () => {
  two = await utterances([
    { say: '', pauseMs: LEAD_MS },
    { say: FIRST, pauseMs: GAP_MS },
    { say: SECOND, pauseMs: TAIL_MS },
  ]);
  const spans = speechSpans(two);
  expect(spans).toHaveLength(2);
  [firstStartMs, firstEndMs, secondStartMs] = [spans[0]!.startMs, spans[0]!.endMs, spans[1]!.startMs];
});

describeSttConformance('deepgram (local protocol server)', () => deepgram(), {
  failing: {
    'the key is refused': () => deepgram({ apiKey: 'wrong-key-0123456789' }),
    'the server is unreachable': async () => {
      const port = await freePort();
      return deepgram({ baseUrl: `http://127.0.0.1:${port}`, maxReconnects: 1, reconnectBackoffMs: 10 });
    },
    'the server cuts every connection': async () => {
      const flaky = await another({ faults: { dropAfterMs: 0 } });
      return deepgram({ maxReconnects: 1, reconnectBackoffMs: 10 }, flaky);
    },
  },
});

describe('DeepgramSTT against the local Deepgram server', () => {
  it('opens the stream with the documented query and the key as `Token`', async () => {
    const before = server.connections.length;
    await run(deepgram(), chunks(two));
    const query = Object.fromEntries(server.connections[before]!.query);
    expect(query).toEqual({
      model: 'nova-3',
      language: 'en-US',
      encoding: 'linear16',
      sample_rate: '16000',
      channels: '1',
      interim_results: 'true',
      endpointing: '300',
      utterance_end_ms: '1000',
      vad_events: 'true',
      smart_format: 'true',
      punctuate: 'true',
    });
  });

  it('maps interims to partials and each is_final to a stable final, on the audio clock, for two utterances', async () => {
    const before = server.connections.length;
    const baseMs = 10_000;
    const input = (async function* () {
      for await (const c of chunks(two)) yield { ...c, tsMs: c.tsMs! + baseMs };
    })();
    const events = await run(deepgram(), input);
    const sent = server.connections[before]!.sent;
    // What the server said: speech started, interims, a speech_final per utterance, and the stream's end.
    expect(sent.filter((t) => t === 'Results:speech_final')).toHaveLength(2);
    expect(
      sent.filter((t) => t === 'Results:final'),
      'no segment finals without speech_final',
    ).toHaveLength(0);
    expect(sent.filter((t) => t === 'SpeechStarted')).toHaveLength(2);
    expect(sent.includes('UtteranceEnd'), 'the 1.5 s gap is longer than utterance_end_ms').toBe(true);
    expect(sent.at(-1)).toBe('Metadata');

    const finals = finalsOf(events);
    expect(finals.map((f) => f.text)).toEqual([FIRST, SECOND]);
    // Order: partials (unsettled) then their final (settled), per utterance.
    const shape = events.map((e) => (e.final ? 'F' : 'p')).join('');
    expect(shape).toMatch(/^p+Fp+F$/);
    for (const e of events) expect(e.stable).toBe(e.final);
    // Times: on the session clock (the chunks' tsMs), the words' span where the speech is (±30 ms).
    expect(Math.abs(finals[0]!.startMs - (baseMs + firstStartMs))).toBeLessThanOrEqual(30);
    expect(Math.abs(finals[0]!.endMs - (baseMs + firstEndMs))).toBeLessThanOrEqual(30);
    expect(Math.abs(finals[1]!.startMs - (baseMs + secondStartMs))).toBeLessThanOrEqual(30);
    expectOrdered(events);
  });

  it('with endpointing off, an UtteranceEnd makes the last partial the final (and the late is_final is not repeated)', async () => {
    const before = server.connections.length;
    const events = await run(deepgram({ endpointingMs: false }), chunks(two));
    const conn = server.connections[before]!;
    expect(conn.query.get('endpointing')).toBe('false');
    expect(conn.sent).not.toContain('Results:speech_final');
    // The first utterance is followed by 1.5 s of quiet (> utterance_end_ms), the second by only 0.8 s.
    expect(conn.sent.filter((t) => t === 'UtteranceEnd')).toHaveLength(1);
    const finals = finalsOf(events);
    // The last partial becomes the final at UtteranceEnd (every word but the last, as this server's interims go);
    // the late is_final then gives only the word not said yet. The second utterance is settled by Finalize.
    expect(finals.map((f) => f.text)).toEqual([
      FIRST.split(' ').slice(0, -1).join(' '),
      FIRST.split(' ').at(-1),
      SECOND,
    ]);
    expect(finals.every((f) => f.stable)).toBe(true);
    expect(finals.map((f) => f.text).join(' ')).toBe(`${FIRST} ${SECOND}`);
    expectOrdered(events);
  });

  it('gives one final per is_final segment of a long utterance', async () => {
    const segmented = await another({ segmentMs: 800 });
    const events = await run(deepgram({}, segmented), chunks(two));
    const finals = finalsOf(events);
    expect(finals.length).toBeGreaterThan(2);
    const sent = segmented.connections[0]!.sent;
    expect(finals).toHaveLength(sent.filter((t) => t === 'Results:final' || t === 'Results:speech_final').length);
    // Joined, the segments are the utterances; segments follow each other in time.
    expect(finals.map((f) => f.text).join(' ')).toBe(`${FIRST} ${SECOND}`);
    for (let i = 1; i < finals.length; i++) expect(finals[i]!.startMs).toBeGreaterThanOrEqual(finals[i - 1]!.endMs);
  });

  it('sends KeepAlive while no audio flows, so the stream outlives the idle limit; without it the stream is closed', async () => {
    const strict = await another({ idleTimeoutMs: 500 });
    // The input stalls for 1.5 s (three idle limits) just before the second utterance.
    const stallAtMs = firstEndMs + 600;
    const input = () => chunks(two, { stallAtMs: stallAtMs - (stallAtMs % 20), stallMs: 1500 });

    const events = await run(deepgram({ keepAliveMs: 150 }, strict), input());
    expect(finalsOf(events).map((f) => f.text)).toEqual([FIRST, SECOND]);
    expect(strict.stats.keepAlives).toBeGreaterThanOrEqual(5);
    expect(strict.stats.idleCloses).toBe(0);
    expect(strict.stats.connections).toBe(1);

    // The same stall with keep-alives off: the server closes the stream (NET-0001), and with no reconnects left
    // that is a connection error.
    const attempt = run(deepgram({ keepAliveMs: 0, maxReconnects: 0 }, strict), input());
    await expect(attempt).rejects.toMatchObject({ name: 'ProviderError', kind: 'connection' });
    await expect(attempt).rejects.toThrow(/NET-0001/);
    expect(strict.stats.idleCloses).toBe(1);
  });

  it('reconnects after a drop mid-stream, keeps the audio clock, and transcribes what follows', async () => {
    // The first socket is cut 700 ms into the gap between the utterances (after the first's speech_final).
    const dropAt = firstEndMs + 700;
    const flaky = await another({ textScope: 'server', faults: { dropAtAudioMs: dropAt, dropConnections: 1 } });
    const events = await run(deepgram({}, flaky), chunks(two, { everyMs: 5 }));
    expect(flaky.stats.drops).toBe(1);
    expect(flaky.stats.connections).toBe(2);
    const finals = finalsOf(events);
    expect(finals.map((f) => f.text)).toEqual([FIRST, SECOND]);
    // The second socket's times start at its own zero; mapped back, they are where the speech is in the session.
    expect(Math.abs(finals[1]!.startMs - secondStartMs)).toBeLessThanOrEqual(30);
    expect(finals[1]!.endMs).toBeLessThanOrEqual(durationMs(two));
  });

  it('fails with a connection ProviderError when the socket keeps dropping', async () => {
    const flaky = await another({ faults: { dropAfterMs: 100 } });
    const attempt = run(deepgram({ maxReconnects: 2, reconnectBackoffMs: 10 }, flaky), chunks(two, { everyMs: 5 }));
    const err = await attempt.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProviderError);
    expect(err).toMatchObject({ kind: 'connection', retryable: true });
    expect((err as Error).message).toMatch(/gave up after 2 reconnect/);
    expect(flaky.stats.connections).toBe(3);
  });

  it('throws an auth ProviderError for a refused key, without the key in the message', async () => {
    const key = 'dg-secret-0123456789abcdef';
    const err = await run(deepgram({ apiKey: key }), chunks(two)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProviderError);
    expect(err).toMatchObject({ kind: 'auth', status: 401, retryable: false });
    expect(String((err as Error).message)).not.toContain(key);
    expect(JSON.stringify(err)).not.toContain(key);
  });

  it('on abort mid-stream ends promptly and the server sees the socket close', async () => {
    const s = await another({});
    const stt = deepgram({}, s);
    const abort = new AbortController();
    const pulled = { count: 0 };
    let abortedAt = 0;
    const iterate = async () => {
      for await (const e of stt.transcribe(chunks(two, { everyMs: 10, pulled }), abort.signal)) {
        if (!e.final && !abort.signal.aborted) {
          abortedAt = performance.now();
          abort.abort();
        }
      }
    };
    await within(iterate(), 10_000, 'aborted transcription');
    expect(performance.now() - abortedAt).toBeLessThan(100);
    await waitFor(() => s.stats.open === 0, { timeoutMs: 2000, message: 'server saw the close' });
    expect(s.connections[0]!.closeCode).toBe(1000);
    const seen = pulled.count;
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(pulled.count - seen, 'input read after abort').toBeLessThanOrEqual(1);
    expect(s.stats.closeStreams, 'abort is not an end of input').toBe(0);
  });

  it('prewarm opens the next stream ahead: the first result comes sooner when the handshake is slow', async () => {
    const slow = await another({ faults: { handshakeDelayMs: 150 } });
    const clip = await utterances([{ say: FIRST, pauseMs: 400 }]);
    const firstResultMs = async (stt: DeepgramSTT) => {
      const started = performance.now();
      let first = 0;
      for await (const _ of stt.transcribe(chunks(clip), new AbortController().signal)) first ||= performance.now();
      return { startedAt: started, ms: first - started };
    };

    const cold = await firstResultMs(deepgram({}, slow));
    const warmStt = deepgram({}, slow);
    await warmStt.prewarm();
    const opened = slow.connections.length;
    const warm = await firstResultMs(warmStt);
    console.log(
      `deepgram first result with a 150 ms handshake: cold ${cold.ms.toFixed(0)} ms, prewarmed ${warm.ms.toFixed(0)} ms`,
    );
    expect(slow.connections.length, 'the prewarmed call opened no connection of its own').toBe(opened);
    const used = slow.connections[opened - 1]!;
    expect(used.openedAt).toBeLessThan(warm.startedAt);
    expect(used.bytes).toBeGreaterThan(0);
  });

  it('closes a prewarmed socket nobody takes after its idle limit, keeping it alive meanwhile', async () => {
    const s = await another({ idleTimeoutMs: 300 });
    const stt = deepgram({ prewarmIdleMs: 800, keepAliveMs: 100 }, s);
    await stt.prewarm();
    await stt.prewarm(); // again: no second socket
    expect(s.stats.connections).toBe(1);
    await waitFor(() => s.stats.open === 0, { timeoutMs: 3000, message: 'warm socket closed' });
    expect(s.stats.idleCloses, 'kept alive until dropped').toBe(0);
    expect(s.connections[0]!.keepAlives).toBeGreaterThanOrEqual(3);
    // The next call opens its own.
    const events = await run(stt, chunks(two));
    expect(finalsOf(events)).toHaveLength(2);
    expect(s.stats.connections).toBe(2);
  });

  it('prewarm against an unreachable server does not throw, and transcribe then fails typed', async () => {
    const port = await freePort();
    const stt = deepgram({ baseUrl: `http://127.0.0.1:${port}`, maxReconnects: 0 });
    await expect(stt.prewarm()).resolves.toBeUndefined();
    await expect(run(stt, chunks(two))).rejects.toMatchObject({ name: 'ProviderError', kind: 'connection' });
  });
});

describe('deepgram STT from the environment', () => {
  it('is registered and built from DEEPGRAM_* variables', async () => {
    const stt = await createProvider('stt', 'deepgram', {
      DEEPGRAM_API_KEY: server.apiKey,
      DEEPGRAM_BASE_URL: server.url,
      DEEPGRAM_MODEL: 'nova-2',
      DEEPGRAM_LANGUAGE: 'de',
      DEEPGRAM_ENDPOINTING_MS: '500',
    });
    expect(stt).toBeInstanceOf(DeepgramSTT);
    instances.push(stt as DeepgramSTT);
    const before = server.connections.length;
    expect(finalsOf(await run(stt, chunks(two)))).toHaveLength(2);
    const query = server.connections[before]!.query;
    expect([query.get('model'), query.get('language'), query.get('endpointing')]).toEqual(['nova-2', 'de', '500']);
  });

  it('names the variable that is wrong', () => {
    expect(() => deepgramSttFromEnv({})).toThrow(/DEEPGRAM_API_KEY is required/);
    expect(() => deepgramSttFromEnv({ DEEPGRAM_API_KEY: '' })).toThrow(/DEEPGRAM_API_KEY is required/);
    expect(() => deepgramSttFromEnv({ DEEPGRAM_API_KEY: 'k', DEEPGRAM_ENDPOINTING_MS: 'soon' })).toThrow(
      /DEEPGRAM_ENDPOINTING_MS must be/,
    );
    expect(() => deepgramSttFromEnv({ DEEPGRAM_API_KEY: 'k', DEEPGRAM_BASE_URL: 'not a url' })).toThrow(
      /DEEPGRAM_BASE_URL/,
    );
    const off = deepgramSttFromEnv({ DEEPGRAM_API_KEY: 'k', DEEPGRAM_ENDPOINTING_MS: 'false' });
    expect(off).toBeInstanceOf(DeepgramSTT);
  });
});
