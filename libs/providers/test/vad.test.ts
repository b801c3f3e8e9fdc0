import { describe, expect, it } from 'vitest';
import { concat, dither, Framer } from '@va/audio';
import { createProvider, providerNames } from '../src/registry.js';
import { EnergyVAD, FakeVAD, SileroVAD, SpeechSegmenter, defaultSileroModelPath } from '../src/vad/index.js';
import { describeVadConformance, speak } from './vad.conformance.js';

describeVadConformance('silero', () => SileroVAD.create());
describeVadConformance('energy', () => new EnergyVAD());
describeVadConformance('fake', () => new FakeVAD(), { stateless: true }); // its default script: an energy threshold

describe('VAD registry', () => {
  it('registers silero, energy and fake', () => {
    expect(providerNames('vad')).toEqual(expect.arrayContaining(['silero', 'energy', 'fake']));
  });

  it('creates silero from the env and honours VAD_MODEL_PATH', async () => {
    const vad = await createProvider('vad', 'silero', { VAD_MODEL_PATH: defaultSileroModelPath() });
    expect(vad).toBeInstanceOf(SileroVAD);
    expect(vad.frameSamples).toBe(512);
    await vad.close();
    await expect(createProvider('vad', 'silero', { VAD_MODEL_PATH: '/nonexistent/vad.onnx' })).rejects.toThrow(
      /model file not found: \/nonexistent\/vad\.onnx/,
    );
  });

  it('rejects a model that is not Silero v5', async () => {
    const legacy = defaultSileroModelPath().replace('silero_vad_v5.onnx', 'silero_vad_legacy.onnx');
    await expect(SileroVAD.create({ modelPath: legacy })).rejects.toThrow(/expected a Silero v5 model/);
  });
});

describe('SileroVAD', () => {
  it('keeps state per instance while sharing a session', async () => {
    const [a, b] = await Promise.all([SileroVAD.create(), SileroVAD.create()]);
    const loud = Int16Array.from({ length: 512 }, (_, i) => Math.round(8000 * Math.sin(i / 3)));
    const quiet = new Int16Array(512);
    // Interleave: b's answers must be what a lone fresh instance gives, untouched by a's frames.
    const lone = await SileroVAD.create();
    const expected = [await lone.speechProbability(quiet), await lone.speechProbability(quiet)];
    // The loud frames do change what follows, or sharing state would go unnoticed.
    const primed = await SileroVAD.create();
    await primed.speechProbability(loud);
    expect(await primed.speechProbability(quiet)).not.toBeCloseTo(expected[0]!, 4);
    await a.speechProbability(loud);
    const got1 = await b.speechProbability(quiet);
    await a.speechProbability(loud);
    const got2 = await b.speechProbability(quiet);
    expect([got1, got2]).toEqual(expected);
    await Promise.all([a.close(), b.close(), lone.close(), primed.close()]);
  });

  it('serializes overlapping calls and refuses work after close()', async () => {
    const vad = await SileroVAD.create();
    const frame = new Int16Array(512);
    const ordered: number[] = [];
    for (let i = 0; i < 4; i++) ordered.push(await vad.speechProbability(frame));
    vad.reset();
    const overlapped = await Promise.all([0, 1, 2, 3].map(() => vad.speechProbability(frame)));
    expect(overlapped).toEqual(ordered);
    await vad.close();
    await expect(vad.speechProbability(frame)).rejects.toThrow(/closed/);
  });
});

describe('SileroVAD batching and silence gate', () => {
  /** Scores every whole frame of `samples`, one frame at a time (each awaited, as the segmenter does). */
  async function scores(vad: SileroVAD, samples: Int16Array): Promise<number[]> {
    const out: number[] = [];
    for (const frame of new Framer(512).push(samples)) out.push(await vad.speechProbability(frame));
    return out;
  }

  it('runs the frames of many streams together, each stream scored as if alone', async () => {
    const speech = speak('the quick brown fox jumps over the lazy dog');
    // Eight streams, each the same speech shifted by a different offset: different frames, different states.
    const streams = Array.from({ length: 8 }, (_, i) => speech.samples.slice(i * 700));
    const alone: number[][] = [];
    for (const s of streams) {
      const vad = await SileroVAD.create({ silenceGateDbfs: -Infinity });
      alone.push(await scores(vad, s));
      await vad.close();
    }
    const vads = await Promise.all(streams.map(() => SileroVAD.create({ silenceGateDbfs: -Infinity })));
    const before = { ...vads[0]!.batchStats };
    const together = await Promise.all(streams.map((s, i) => scores(vads[i]!, s)));
    const runs = vads[0]!.batchStats.runs - before.runs;
    const rows = vads[0]!.batchStats.rows - before.rows;
    expect(rows).toBe(together.flat().length);
    // Frame k of every stream went out in one run: about one run per frame position, not one per row.
    expect(runs).toBeLessThan(rows / 4);
    together.forEach((got, i) => {
      expect(got).toHaveLength(alone[i]!.length);
      got.forEach((p, k) => expect(p).toBeCloseTo(alone[i]![k]!, 4));
    });
    await Promise.all(vads.map((v) => v.close()));
  });

  it('skips the model in plain silence and still finds the same speech', async () => {
    // Speech, two seconds of quiet (dithered, as a microphone's gateway sends it), speech, quiet.
    const words = speak('turn the lights off in the kitchen please').samples;
    const quiet = dither(new Int16Array(32000), 6, 7);
    const audio = concat([
      { samples: quiet.slice(0, 8000), sampleRate: 16000 },
      { samples: words, sampleRate: 16000 },
      { samples: quiet, sampleRate: 16000 },
      { samples: words, sampleRate: 16000 },
      { samples: quiet, sampleRate: 16000 },
    ]).samples;
    const ungated = await SileroVAD.create({ silenceGateDbfs: -Infinity });
    const gated = await SileroVAD.create();
    const [full, skipped] = [await scores(ungated, audio), await scores(gated, audio)];
    expect(gated.gatedFrames).toBeGreaterThan(full.length / 3);
    expect(ungated.gatedFrames).toBe(0);
    // Gated frames score as silence, as the model does.
    const silentFrames = full.flatMap((p, k) => (skipped[k] === full[k] ? [] : [k])).filter((k) => full[k]! < 0.1);
    for (const k of silentFrames) expect(skipped[k]).toBeLessThan(0.1);
    // Same speech found: as many segments, each edge within one 32 ms frame of the ungated model's.
    const segments = async (vad: SileroVAD) => {
      vad.reset();
      const seg = new SpeechSegmenter(vad);
      return [...(await seg.push(audio)), ...(await seg.finish())];
    };
    const [expected, got] = [await segments(ungated), await segments(gated)];
    expect(expected.filter((e) => e.kind === 'start')).toHaveLength(2);
    expect(got.map((e) => e.kind)).toEqual(expected.map((e) => e.kind));
    got.forEach((e, i) => expect(Math.abs(e.atMs - expected[i]!.atMs)).toBeLessThanOrEqual(32));
    await Promise.all([ungated.close(), gated.close()]);
  });

  it('keeps its ear after a long silence, where the model alone drifts', async () => {
    // Silero's recurrent state keeps moving through silence: after 6 s of it the model scores clear speech far
    // lower than after a short pause. The gate holds the state of a settled pause, so the onset is heard the same.
    const words = speak('hello there').samples;
    const long = dither(new Int16Array(16000 * 6), 6, 11);
    const onset = async (vad: SileroVAD) => {
      await scores(vad, words);
      await scores(vad, long);
      return Math.max(...(await scores(vad, words)).slice(0, 12));
    };
    const ungated = await SileroVAD.create({ silenceGateDbfs: -Infinity });
    const gated = await SileroVAD.create();
    const fresh = await SileroVAD.create({ silenceGateDbfs: -Infinity });
    const afterShortPause = Math.max(...(await scores(fresh, words)).slice(0, 12));
    expect(await onset(gated)).toBeCloseTo(afterShortPause, 1);
    expect(await onset(ungated)).toBeLessThan(afterShortPause - 0.1);
    await Promise.all([ungated.close(), gated.close(), fresh.close()]);
  });
});
