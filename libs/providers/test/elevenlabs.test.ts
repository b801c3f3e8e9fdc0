import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { concat, durationMs } from '@va/audio';
import { ProviderError } from '../src/errors.js';
import { createProvider } from '../src/registry.js';
import { ElevenLabsTTS, type ElevenLabsTtsOptions } from '../src/tts/index.js';
import type { SpeechChunk } from '../src/types.js';
import { collect, deltas, describeTtsConformance, TTS_DELTAS, TTS_TEXT, waitUntil, within } from './tts.conformance.js';
import { startElevenLabsServer, type ElevenLabsServer } from '@va/testkit';

const BAD_KEY = 'xi-wrong-9f8e7d6c5b4a3210';
let server: ElevenLabsServer;
let failing: Record<'auth' | 'error' | 'stall' | 'drop', ElevenLabsServer>;
let deadUrl: string;

beforeAll(async () => {
  server = await startElevenLabsServer({ lifetimeMs: 120_000 });
  failing = {
    auth: await startElevenLabsServer({ faults: { rejectAuth: true } }),
    error: await startElevenLabsServer({ faults: { serverError: true } }),
    stall: await startElevenLabsServer({ faults: { stallBeforeFirstByte: true } }),
    drop: await startElevenLabsServer({ faults: { dropAfterMessages: 2 } }),
  };
  const dead = await startElevenLabsServer();
  deadUrl = dead.url;
  await dead.close();
});

afterAll(async () => {
  await Promise.all([server, ...Object.values(failing)].map((s) => s.close()));
});

const make = (o: Partial<ElevenLabsTtsOptions> = {}) =>
  new ElevenLabsTTS({ apiKey: server.apiKey, baseUrl: server.url, ...o });

function failingAdapters(transport: 'websocket' | 'http') {
  const t = { transport, maxRetries: 0 };
  return {
    'the key is refused (401)': {
      make: () => make({ ...t, apiKey: BAD_KEY, baseUrl: failing.auth.url }),
      kind: 'auth' as const,
    },
    'the provider answers 500': { make: () => make({ ...t, baseUrl: failing.error.url }), kind: 'server' as const },
    'the provider stalls before the first byte': {
      make: () => make({ ...t, baseUrl: failing.stall.url, firstByteTimeoutMs: 300 }),
      kind: 'timeout' as const,
    },
    'the connection drops mid-stream': {
      make: () => make({ ...t, baseUrl: failing.drop.url }),
      kind: 'connection' as const,
    },
    'nothing listens': { make: () => make({ ...t, baseUrl: deadUrl }), kind: 'connection' as const },
  };
}

describeTtsConformance('elevenlabs (stream-input WebSocket)', () => make(), {
  openStreams: () => server.stats.open,
  failing: failingAdapters('websocket'),
  secrets: [BAD_KEY],
});
describeTtsConformance('elevenlabs (SDK, HTTP stream per sentence)', () => make({ transport: 'http' }), {
  openStreams: () => server.stats.httpActive,
  failing: failingAdapters('http'),
  secrets: [BAD_KEY],
});

/** Audio (ms) played up to and including each chunk. */
function playedMs(chunks: SpeechChunk[]): number[] {
  let ms = 0;
  return chunks.map((c) => (ms += durationMs(c)));
}

describe('ElevenLabsTTS over stream-input', () => {
  it('streams text in as it comes: init, whole words, flush at sentence ends, then the end of input', async () => {
    const before = server.connections.length;
    await collect(make(), deltas(...TTS_DELTAS));
    const conn = server.connections[before]!;
    expect(conn.auth).toBe('header');
    expect(conn.voiceId).toBe('JBFqnCBsd6RMkjVDRZzb');
    expect(Object.fromEntries(conn.query)).toMatchObject({
      model_id: 'eleven_flash_v2_5',
      output_format: 'pcm_16000',
      sync_alignment: 'true',
    });
    expect(conn.messages[0]).toEqual({ text: ' ' });
    expect(conn.messages.at(-1)).toEqual({ text: '' });
    const texts = conn.messages.slice(1, -1) as { text: string; flush?: boolean }[];
    // The text as sent is the input, in order, nothing lost or added.
    expect(texts.map((m) => m.text).join('')).toBe(TTS_TEXT);
    // Words went out before their sentence was complete; flushes exactly at the two sentence ends.
    expect(texts[0]).toEqual({ text: 'Sure, let ' });
    expect(texts.filter((m) => m.flush).map((m) => m.text)).toEqual(['me check that.', 'two.']);
    expect(conn.generations).toEqual(['Sure, let me check that.', ' The answer is forty two.']);
    expect(conn.final).toBe(true);
  });

  it('maps the alignment to textOffsets that follow the audio, for non-ASCII text too', async () => {
    const parts = ['Grüße, ', '東京! ', 'Ça va? ', 'Bis bald 👋 ', 'Tschüss.'];
    const text = parts.join('');
    const chunks = await collect(make(), deltas(...parts));
    const offsets = chunks.map((c) => c.textOffset);
    for (let i = 1; i < offsets.length; i++) expect(offsets[i]!).toBeGreaterThanOrEqual(offsets[i - 1]!);
    expect(offsets.at(-1)).toBe(text.length);
    // The server gives every character (code point) 60 ms: what a chunk reports as spoken is what has played.
    const played = playedMs(chunks);
    chunks.forEach((c, i) => {
      const spokenMs = Array.from(text.slice(0, c.textOffset)).length * 60;
      expect(Math.abs(played[i]! - spokenMs), `chunk ${i} at offset ${c.textOffset}`).toBeLessThanOrEqual(60);
    });
    for (const mark of ['Grüße,', 'Grüße, 東', 'Grüße, 東京', 'Grüße, 東京! Ça va?', 'Bis bald 👋']) {
      const end = mark.startsWith('Bis') ? text.indexOf(mark) + mark.length : mark.length;
      expect(offsets, mark).toContain(end);
    }
    // Never between the two halves of the emoji's surrogate pair.
    const emoji = text.indexOf('👋');
    expect(offsets).not.toContain(emoji + 1);
  });

  it('follows alignment that leaves out the whitespace between sentences', async () => {
    const trimming = await startElevenLabsServer({ trimGenerations: true });
    try {
      const tts = new ElevenLabsTTS({ apiKey: trimming.apiKey, baseUrl: trimming.url });
      const chunks = await collect(tts, deltas(...TTS_DELTAS));
      expect(trimming.connections[0]!.generations).toEqual(['Sure, let me check that.', 'The answer is forty two.']);
      const offsets = chunks.map((c) => c.textOffset);
      for (let i = 1; i < offsets.length; i++) expect(offsets[i]!).toBeGreaterThanOrEqual(offsets[i - 1]!);
      expect(offsets).toContain(TTS_TEXT.indexOf('that.') + 5);
      expect(offsets).toContain(TTS_TEXT.indexOf('forty') + 5);
      expect(offsets.at(-1)).toBe(TTS_TEXT.length);
    } finally {
      await trimming.close();
    }
  });

  it('without alignment, reports sentence ends only, from a pace estimate', async () => {
    const bare = await startElevenLabsServer({ alignment: false });
    try {
      const text = 'The first one is short. The second sentence is quite a bit longer than that. Done.';
      const chunks = await collect(
        new ElevenLabsTTS({ apiKey: bare.apiKey, baseUrl: bare.url, msPerCharEstimate: 60 }),
        deltas(text),
      );
      const ends = [0, text.indexOf('short.') + 6, text.indexOf('that.') + 5, text.length];
      const offsets = chunks.map((c) => c.textOffset);
      for (let i = 1; i < offsets.length; i++) expect(offsets[i]!).toBeGreaterThanOrEqual(offsets[i - 1]!);
      expect(new Set(offsets)).toEqual(new Set(ends));
      // The first sentence is not claimed before its audio has played.
      const played = playedMs(chunks);
      const firstAt = offsets.findIndex((o) => o >= ends[1]!);
      expect(played[firstAt]!).toBeGreaterThanOrEqual(ends[1]! * 60 - 20);
    } finally {
      await bare.close();
    }
  });

  it('sends nothing for unspeakable segments and keeps offsets through them', async () => {
    const before = server.connections.length;
    const text = 'Hello there. ... Fine, thanks. -- ';
    const chunks = await collect(make(), deltas(text));
    expect(chunks.at(-1)!.textOffset).toBe(text.length);
    const sent = server.connections[before]!.messages.slice(1, -1) as { text: string }[];
    expect(sent.map((m) => m.text).join('')).not.toContain('--');
    expect(durationMs(concat(chunks))).toBe('Hello there. ... Fine, thanks.'.length * 60);
  });

  it('closes the socket at once on abort mid-stream: the server sees the disconnect', async () => {
    const before = server.stats.disconnects;
    const n = server.connections.length;
    const ac = new AbortController();
    const got: SpeechChunk[] = [];
    const long = `${'This sentence takes a while to say out loud. '.repeat(8)}`;
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
    const conn = server.connections[n]!;
    expect(conn).toMatchObject({ disconnected: true, final: false, closed: true });
    expect(conn.audioMessages).toBeLessThan(long.length / 8);
  });

  it('throws typed errors without the key in the message', async () => {
    const err = await collect(make({ apiKey: BAD_KEY, baseUrl: failing.auth.url }), deltas('Hello.')).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ProviderError);
    expect(err).toMatchObject({ provider: 'elevenlabs', kind: 'auth', status: 401, retryable: false });
    expect((err as Error).message).not.toContain(BAD_KEY);
    const e500 = await collect(make({ baseUrl: failing.error.url }), deltas('Hello.')).catch((e: unknown) => e);
    expect(e500).toMatchObject({ kind: 'server', status: 500, retryable: true });
  });

  it('turns a provider error message (input timeout, then close 1008) into a typed error', async () => {
    const idle = await startElevenLabsServer({ inactivityTimeoutMs: 200 });
    try {
      async function* stalls() {
        yield 'Hello there';
        await new Promise((resolve) => setTimeout(resolve, 1_000));
        yield '.';
      }
      const err = await collect(new ElevenLabsTTS({ apiKey: idle.apiKey, baseUrl: idle.url }), stalls()).catch(
        (e: unknown) => e,
      );
      expect(err).toMatchObject({ name: 'ProviderError', kind: 'timeout' });
      expect((err as Error).message).toMatch(/input_timeout_exceeded/);
      expect(idle.stats.inactivityCloses).toBe(1);
    } finally {
      await idle.close();
    }
  });

  it('prewarm opens the next reply’s socket ahead: reused, and first audio comes sooner', async () => {
    const slow = await startElevenLabsServer({ faults: { handshakeDelayMs: 150 } });
    try {
      const firstChunk = async (tts: ElevenLabsTTS) => {
        const t0 = performance.now();
        for await (const _ of tts.synthesize(deltas('Hello there. '), new AbortController().signal)) {
          return performance.now() - t0;
        }
        throw new Error('no audio');
      };
      const cold = await firstChunk(new ElevenLabsTTS({ apiKey: slow.apiKey, baseUrl: slow.url }));
      expect(slow.stats.connections).toBe(1);

      const tts = new ElevenLabsTTS({ apiKey: slow.apiKey, baseUrl: slow.url });
      await tts.prewarm();
      await tts.prewarm(); // cheap and safe to call again: still one socket
      expect(slow.stats.connections).toBe(2);
      const warm = await firstChunk(tts);
      // The reply went over the prewarmed socket: no third connection, and it is the one that got the text.
      expect(slow.stats.connections).toBe(2);
      expect(slow.connections[1]!.messages.length).toBeGreaterThan(0);
      console.log(
        `elevenlabs first chunk, 150 ms handshake (local server): cold ${cold.toFixed(1)} ms, prewarmed ${warm.toFixed(1)} ms`,
      );
      // The next reply, not prewarmed, connects itself.
      await firstChunk(tts);
      expect(slow.stats.connections).toBe(3);
    } finally {
      await slow.close();
    }
  });

  it('closes a prewarmed socket nobody takes after the idle limit', async () => {
    const before = server.stats.connections;
    const tts = make({ prewarmIdleMs: 100 });
    await tts.prewarm();
    expect(server.stats.connections).toBe(before + 1);
    await waitUntil(() => server.connections[before]!.closed, 'the idle socket to close', 2_000);
    expect((await collect(tts, deltas('Hi there.'))).length).toBeGreaterThan(0);
    expect(server.stats.connections).toBe(before + 2);
  });

  it('never throws from prewarm', async () => {
    await expect(make({ baseUrl: deadUrl }).prewarm()).resolves.toBeUndefined();
    await expect(make({ apiKey: BAD_KEY, baseUrl: failing.auth.url }).prewarm()).resolves.toBeUndefined();
    await expect(make({ baseUrl: deadUrl, transport: 'http' }).prewarm()).resolves.toBeUndefined();
  });

  it('is registered as "elevenlabs", configured from the environment', async () => {
    const tts = await createProvider('tts', 'elevenlabs', {
      ELEVENLABS_API_KEY: server.apiKey,
      ELEVENLABS_BASE_URL: server.url,
      ELEVENLABS_VOICE_ID: 'voice-x',
      ELEVENLABS_MODEL: 'eleven_turbo_v2_5',
    });
    expect(tts).toBeInstanceOf(ElevenLabsTTS);
    const before = server.connections.length;
    expect((await collect(tts, deltas('Hi there.'))).length).toBeGreaterThan(0);
    expect(server.connections[before]!.voiceId).toBe('voice-x');
    expect(server.connections[before]!.query.get('model_id')).toBe('eleven_turbo_v2_5');
    await expect(createProvider('tts', 'elevenlabs', { ELEVENLABS_API_KEY: '' })).rejects.toThrow(
      /ELEVENLABS_API_KEY is required/,
    );
    await expect(
      createProvider('tts', 'elevenlabs', { ELEVENLABS_API_KEY: 'k', ELEVENLABS_BASE_URL: 'not a url' }),
    ).rejects.toThrow(/ELEVENLABS_BASE_URL/);
  });
});

describe('ElevenLabsTTS over HTTP (SDK)', () => {
  it('uses textToSpeech.stream per sentence and voices.get to prewarm', async () => {
    const before = server.stats.httpRequests;
    const tts = make({ transport: 'http' });
    await tts.prewarm();
    expect(server.stats.voiceRequests).toBeGreaterThan(0);
    const chunks = await collect(tts, deltas(...TTS_DELTAS));
    expect(server.stats.httpRequests - before).toBe(2);
    expect(chunks.at(-1)!.textOffset).toBe(TTS_TEXT.length);
    expect(durationMs(concat(chunks))).toBe(
      ('Sure, let me check that.'.length + 'The answer is forty two.'.length) * 60,
    );
  });
});

describe('ElevenLabsTTS voice per synthesis', () => {
  it('opens its stream-input socket on the voice a synthesis asks for (an agent’s), else its own', async () => {
    const before = server.connections.length;
    const tts = make({ voiceId: 'own-voice' });
    const speak = async (voice?: string) => {
      for await (const _ of tts.synthesize(
        deltas('Hello there.'),
        new AbortController().signal,
        voice ? { voice } : undefined,
      ));
    };
    await speak('agents-voice');
    await speak();
    expect(server.connections.slice(before).map((c) => c.voiceId)).toEqual(['agents-voice', 'own-voice']);
    tts.close();
  });
});
