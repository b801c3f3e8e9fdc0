import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { concat, durationMs } from '@va/audio';
import { ProviderError } from '../src/errors.js';
import { createProvider } from '../src/registry.js';
import { OpenAITTS, type OpenAITtsOptions } from '../src/tts/index.js';
import type { SpeechChunk } from '../src/types.js';
import { collect, deltas, describeTtsConformance, TTS_DELTAS, TTS_TEXT, waitUntil, within } from './tts.conformance.js';
import { startOpenAITtsServer, toneFor, type OpenAITtsServer } from '@va/testkit';

const BAD_KEY = 'sk-wrong-9f8e7d6c5b4a3210';
let server: OpenAITtsServer;
let failing: Record<'auth' | 'error' | 'stall' | 'drop', OpenAITtsServer>;
let deadUrl: string;

beforeAll(async () => {
  server = await startOpenAITtsServer();
  failing = {
    auth: await startOpenAITtsServer({ faults: { rejectAuth: true } }),
    error: await startOpenAITtsServer({ faults: { serverError: true } }),
    stall: await startOpenAITtsServer({ faults: { stallBeforeFirstByte: true } }),
    drop: await startOpenAITtsServer({ faults: { dropAfterBytes: 10_000 } }),
  };
  const dead = await startOpenAITtsServer();
  deadUrl = dead.url;
  await dead.close();
});

afterAll(async () => {
  await Promise.all([server, ...Object.values(failing)].map((s) => s.close()));
});

const make = (o: Partial<OpenAITtsOptions> = {}) => new OpenAITTS({ apiKey: server.apiKey, baseURL: server.url, ...o });

const failingAdapters = {
  'the key is refused (401)': {
    make: () => make({ apiKey: BAD_KEY, baseURL: failing.auth.url }),
    kind: 'auth' as const,
  },
  'the provider answers 500': { make: () => make({ baseURL: failing.error.url }), kind: 'server' as const },
  'the provider stalls before the first byte': {
    make: () => make({ baseURL: failing.stall.url, firstByteTimeoutMs: 300 }),
    kind: 'timeout' as const,
  },
  'the connection drops mid-stream': { make: () => make({ baseURL: failing.drop.url }), kind: 'connection' as const },
  'nothing listens': { make: () => make({ baseURL: deadUrl, maxRetries: 0 }), kind: 'connection' as const },
};

describeTtsConformance('openai (24 kHz, as sent)', () => make(), {
  openStreams: () => server.stats.active,
  failing: failingAdapters,
  secrets: [BAD_KEY],
});
describeTtsConformance('openai (resampled to 16 kHz)', () => make({ sampleRate: 16000 }), {
  openStreams: () => server.stats.active,
});

describe('OpenAITTS', () => {
  it('sends one pcm request per sentence, with model, voice and the sentence', async () => {
    const before = server.requests.length;
    const chunks = await collect(make(), deltas(...TTS_DELTAS));
    const sent = server.requests.slice(before);
    expect(sent.map((r) => r.input)).toEqual(['Sure, let me check that.', 'The answer is forty two.']);
    for (const r of sent) {
      expect(r).toMatchObject({ model: 'gpt-4o-mini-tts', voice: 'alloy', responseFormat: 'pcm', completed: true });
    }
    // Every chunk of a sentence reports the end of the sentence before; its last chunk the sentence's own end.
    const first = TTS_TEXT.indexOf('that.') + 5;
    expect([...new Set(chunks.map((c) => c.textOffset))]).toEqual([0, first, TTS_TEXT.length]);
  });

  it('streams the PCM as sent at 24 kHz, samples exact across odd-sized body chunks', async () => {
    const chunks = await collect(make(), deltas('Hello there.'));
    const all = concat(chunks, 24000);
    expect(all.samples).toEqual(toneFor('Hello there.', 60, 24000));
    expect(chunks.every((c) => c.sampleRate === 24000 && c.samples.length <= 480)).toBe(true);
  });

  it('resamples to the declared rate with the right duration', async () => {
    const tts = make({ sampleRate: 16000 });
    expect(tts.sampleRate).toBe(16000);
    const chunks = await collect(tts, deltas('Hello there. ', 'How are you today?'));
    expect(chunks.every((c) => c.sampleRate === 16000 && c.samples.length <= 320)).toBe(true);
    const ms = durationMs(concat(chunks, 16000));
    const expected = ('Hello there.'.length + 'How are you today?'.length) * 60;
    expect(Math.abs(ms - expected)).toBeLessThan(expected * 0.02);
  });

  it('cancels the HTTP request on abort mid-stream: the server sees the disconnect', async () => {
    const before = server.stats.disconnects;
    const ac = new AbortController();
    const got: SpeechChunk[] = [];
    const long = `${'This sentence takes a while to say out loud, '.repeat(8)}really.`;
    await within(
      (async () => {
        for await (const c of make().synthesize(deltas(long), ac.signal)) {
          got.push(c);
          if (got.length === 3) ac.abort();
        }
      })(),
      5_000,
      'aborted stream',
    );
    expect(got).toHaveLength(3);
    await waitUntil(() => server.stats.disconnects > before, 'the server to see the disconnect');
    const last = server.requests.at(-1)!;
    expect(last.disconnected).toBe(true);
    expect(last.bytesSent).toBeLessThan(long.length * 60 * 48);
  });

  it('throws typed errors without the key in the message', async () => {
    const err = await collect(make({ apiKey: BAD_KEY, baseURL: failing.auth.url }), deltas('Hello.')).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ProviderError);
    expect(err).toMatchObject({ provider: 'openai', kind: 'auth', status: 401, retryable: false });
    expect((err as Error).message).toContain('Incorrect API key');
    expect((err as Error).message).not.toContain(BAD_KEY);
    const server500 = await collect(make({ baseURL: failing.error.url }), deltas('Hello.')).catch((e: unknown) => e);
    expect(server500).toMatchObject({ kind: 'server', status: 500, retryable: true });
  });

  it('prewarm opens the connection the first sentence then uses', async () => {
    const fresh = await startOpenAITtsServer();
    try {
      const cold = new OpenAITTS({ apiKey: fresh.apiKey, baseURL: fresh.url });
      const t0 = performance.now();
      const coldFirst = await firstChunkMs(cold, t0);
      await fresh.close();

      const warmServer = await startOpenAITtsServer();
      try {
        const warm = new OpenAITTS({ apiKey: warmServer.apiKey, baseURL: warmServer.url });
        await warm.prewarm();
        expect(warmServer.stats).toMatchObject({ connections: 1, modelRequests: 1 });
        // The session opens before its first turn; fetch hands the connection back to its pool a moment after a
        // response's end (a request sent in the same instant opens another).
        await new Promise((resolve) => setTimeout(resolve, 50));
        const t1 = performance.now();
        const warmFirst = await firstChunkMs(warm, t1);
        // The speech request went over the prewarmed connection: no second one was opened.
        expect(warmServer.stats.connections).toBe(1);
        expect(warmServer.requests[0]!.connection).toBe(1);
        console.log(
          `openai TTS first chunk (local server): cold ${coldFirst.toFixed(1)} ms, prewarmed ${warmFirst.toFixed(1)} ms`,
        );
      } finally {
        await warmServer.close();
      }
    } finally {
      await fresh.close();
    }
  });

  it('never throws from prewarm', async () => {
    await expect(make({ baseURL: deadUrl }).prewarm()).resolves.toBeUndefined();
    await expect(make({ apiKey: BAD_KEY, baseURL: failing.auth.url }).prewarm()).resolves.toBeUndefined();
  });

  it('is registered as "openai", configured from the environment', async () => {
    const tts = await createProvider('tts', 'openai', {
      OPENAI_API_KEY: server.apiKey,
      OPENAI_TTS_BASE_URL: server.url,
      OPENAI_TTS_VOICE: 'nova',
      OPENAI_TTS_SAMPLE_RATE: '16000',
    });
    expect(tts).toBeInstanceOf(OpenAITTS);
    expect(tts.sampleRate).toBe(16000);
    const before = server.requests.length;
    expect((await collect(tts, deltas('Hi there.'))).length).toBeGreaterThan(0);
    expect(server.requests[before]).toMatchObject({ voice: 'nova', model: 'gpt-4o-mini-tts' });
    await expect(createProvider('tts', 'openai', {})).rejects.toThrow(/OPENAI_API_KEY is required/);
    await expect(createProvider('tts', 'openai', { OPENAI_API_KEY: 'k', OPENAI_TTS_SPEED: '9' })).rejects.toThrow(
      /OPENAI_TTS_SPEED/,
    );
  });
});

async function firstChunkMs(tts: OpenAITTS, t0: number): Promise<number> {
  const ac = new AbortController();
  let at = -1;
  for await (const _ of tts.synthesize(deltas('Hello there. '), ac.signal)) {
    at = performance.now() - t0;
    break;
  }
  return at;
}

describe('OpenAITTS voice per synthesis', () => {
  it('speaks in the voice a synthesis asks for (an agent’s), else its own', async () => {
    const before = server.requests.length;
    const tts = make({ voice: 'alloy' });
    const speak = (voice?: string) =>
      (async () => {
        for await (const _ of tts.synthesize(
          deltas('Hello there.'),
          new AbortController().signal,
          voice ? { voice } : undefined,
        ));
      })();
    await speak('nova');
    await speak();
    expect(server.requests.slice(before).map((r) => r.voice)).toEqual(['nova', 'alloy']);
  });
});
