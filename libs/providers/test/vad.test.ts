import { describe, expect, it } from 'vitest';
import { createProvider, providerNames } from '../src/registry.js';
import { EnergyVAD, SileroVAD, defaultSileroModelPath } from '../src/vad/index.js';
import { describeVadConformance } from './vad.conformance.js';

describeVadConformance('silero', () => SileroVAD.create());
describeVadConformance('energy', () => new EnergyVAD());

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
