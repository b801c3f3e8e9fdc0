import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { concat, rmsDbfs, samplesForMs } from '@va/audio';
import { createProvider, providerNames } from '../src/registry.js';
import { FallbackTTS } from '../src/fallback-streams.js';
import { FakeTTS, LocalTTS } from '../src/tts/index.js';
import { collect, deltas, describeTtsConformance, TTS_DELTAS, TTS_TEXT, waitUntil, within } from './tts.conformance.js';

/** flite processes that are children of this test process (zombies count: they were not waited for). */
function fliteChildren(): number {
  let n = 0;
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const m = /^\d+ \((.*)\) \S (\d+)/.exec(readFileSync(`/proc/${pid}/stat`, 'utf8'));
      if (m?.[1] === 'flite' && Number(m[2]) === process.pid) n++;
    } catch {
      // the process ended while we looked
    }
  }
  return n;
}

describeTtsConformance('local (flite)', () => new LocalTTS(), { liveProcesses: fliteChildren });
// rtf > 0: synthesis takes time, so abort lands while a segment is being made.
describeTtsConformance('FakeTTS', () => new FakeTTS({ rtf: 0.05 }));
describeTtsConformance(
  'FallbackTTS (FakeTTS → FakeTTS)',
  () =>
    new FallbackTTS([new FakeTTS({ rtf: 0.05 }), new FakeTTS({ rtf: 0.05, toneHz: 330 })], { ttfbTimeoutMs: 5_000 }),
);

describe('LocalTTS', () => {
  it('speaks text flite could misread as options or that holds control characters', async () => {
    const chunks = await collect(new LocalTTS(), deltas('-voice kal -o x. ', 'Tab\there, nul\u0000 there.'));
    expect(chunks.length).toBeGreaterThan(10);
    expect(rmsDbfs(concat(chunks).samples)).toBeGreaterThan(-40);
    expect(fliteChildren()).toBe(0);
  });

  it('kills flite on abort instead of waiting for it', async () => {
    // One huge segment (no cap): flite needs ~30 s for it, so only a kill ends the stream inside the hang guard.
    const tts = new LocalTTS({ maxChars: 1e6 });
    const ac = new AbortController();
    const chunks = collect(tts, deltas('word '.repeat(5000)), ac.signal);
    await waitUntil(() => fliteChildren() > 0, 'flite to start');
    ac.abort();
    expect(await within(chunks, 5_000, 'aborted stream to end')).toEqual([]);
    expect(fliteChildren()).toBe(0);
  });

  it('throws when flite cannot run or lacks the voice; stays quiet for empty input even then', async () => {
    const broken = new LocalTTS({ binary: '/nonexistent/flite' });
    await expect(collect(broken, deltas('Hello there.'))).rejects.toThrow(/cannot start \/nonexistent\/flite/);
    await expect(collect(broken, deltas(''))).resolves.toEqual([]);
    // flite itself falls back to another voice for both, and exits 0.
    const noVoice = new LocalTTS({ voice: 'nobody' });
    await expect(collect(noVoice, deltas('Hello there.'))).rejects.toThrow(/no voice "nobody"/);
    const noFile = new LocalTTS({ voice: '/nonexistent/voice.flitevox' });
    await expect(collect(noFile, deltas('Hello there.'))).rejects.toThrow(/load voice/);
    expect(fliteChildren()).toBe(0);
  });
});

describe('FakeTTS', () => {
  it('is deterministic: N ms per character, one segment per sentence', async () => {
    const a = new FakeTTS({ msPerChar: 50 });
    const b = new FakeTTS({ msPerChar: 50 });
    const ca = await collect(a, deltas(...TTS_DELTAS));
    const cb = await collect(b, deltas(TTS_TEXT));
    expect(a.segments).toEqual(['Sure, let me check that.', 'The answer is forty two.']);
    expect(b.segments).toEqual(a.segments);
    const pa = concat(ca);
    expect(pa.samples).toEqual(concat(cb).samples);
    expect(pa.samples.length).toBe(samplesForMs(50, 16000) * (24 + 24));
  });

  it('honors time to first byte and real-time factor without timing the test: abort during the wait', async () => {
    const tts = new FakeTTS({ ttfbMs: 60_000 });
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 20);
    expect(await collect(tts, deltas('Hello there.'), ac.signal)).toEqual([]);
    expect(tts.segments).toEqual([]);
  });
});

describe('tts registry', () => {
  it('registers local and fake, configured from the environment', async () => {
    expect(providerNames('tts')).toEqual(expect.arrayContaining(['local', 'fake']));
    expect(await createProvider('tts', 'local', {})).toBeInstanceOf(LocalTTS);
    const fake = await createProvider('tts', 'fake', { TTS_FAKE_MS_PER_CHAR: '10', TTS_FAKE_RTF: '' });
    const chunks = await collect(fake, deltas('Hi.'));
    expect(concat(chunks).samples.length).toBe(samplesForMs(10, 16000) * 3);
    await expect(createProvider('tts', 'fake', { TTS_FAKE_RTF: 'fast' })).rejects.toThrow(/TTS_FAKE_RTF/);
  });
});

describe('voice per synthesis', () => {
  it('flite speaks in the voice a synthesis asks for, and names the voices it has when it has not that one', async () => {
    const tts = new LocalTTS();
    const speak = async (voice?: string) => {
      const out: Int16Array[] = [];
      for await (const c of tts.synthesize(
        deltas('Good evening.'),
        new AbortController().signal,
        voice ? { voice } : undefined,
      )) {
        out.push(c.samples);
      }
      return Int16Array.from(out.flatMap((a) => [...a]));
    };
    const [own, kal] = await Promise.all([speak(), speak('kal')]);
    expect(own.length).toBeGreaterThan(0);
    expect(kal.length).toBeGreaterThan(0);
    expect(Buffer.from(kal.buffer).equals(Buffer.from(own.buffer))).toBe(false);
    await expect(speak('nobody')).rejects.toThrow(/flite has no voice "nobody" \(has .*kal/);
  });

  it('a fallback chain asks its first provider for the voice; a fallback speaks with its own', async () => {
    // The first is too slow to start (its first audio later than the budget): the second speaks.
    const [first, second] = [new FakeTTS({ ttfbMs: 5_000 }), new FakeTTS()];
    const chain = new FallbackTTS([first, second], { ttfbTimeoutMs: 100 });
    for await (const _ of chain.synthesize(deltas('Hi.'), new AbortController().signal, { voice: 'nova' }));
    expect(first.voices).toEqual(['nova']);
    expect(second.voices).toEqual([undefined]);
  });
});
