import { describe, expect, it } from 'vitest';
import { silence } from '@va/audio';
import { FakeVAD, SEGMENTER_DEFAULTS, SpeechSegmenter, type FakeFrame, type SegmentEvent } from '../src/vad/index.js';

const RATE = 16000;
const samplesFor = (ms: number) => (ms * RATE) / 1000;
/** Fake frames are 20 ms; content is a ramp so pre-roll audio can be checked sample by sample. */
const ramp = (ms: number) => Int16Array.from({ length: samplesFor(ms) }, (_, i) => i % 30000);

/** Probability by time: the value of the first span containing the frame start, else `rest`. */
function timeline(spans: ReadonlyArray<readonly [number, number, number]>, rest = 0.05) {
  return ({ atMs }: FakeFrame) => spans.find(([a, b]) => atMs >= a && atMs < b)?.[2] ?? rest;
}

async function run(seg: SpeechSegmenter, audio: Int16Array, chunk = audio.length): Promise<SegmentEvent[]> {
  const events: SegmentEvent[] = [];
  for (let i = 0; i < audio.length; i += chunk) events.push(...(await seg.push(audio.subarray(i, i + chunk))));
  return [...events, ...(await seg.finish())];
}
const brief = (events: SegmentEvent[]) => events.map((e) => [e.kind, e.atMs]);

describe('SpeechSegmenter', () => {
  it('uses the documented defaults', () => {
    expect(SEGMENTER_DEFAULTS).toEqual({
      startThreshold: 0.5,
      endThreshold: 0.35,
      minSpeechMs: 64,
      minSilenceMs: 300,
      preRollMs: 200,
      originMs: 0,
    });
  });

  it('dates start at the first frame of the confirming run and end at the first silent frame', async () => {
    const seg = new SpeechSegmenter(new FakeVAD({ script: FakeVAD.speechBetween([[1000, 2000]]) }));
    const audio = silence(3000, RATE).samples;
    // 1000–1060 ms is three 20 ms frames (60 ms < 64): not yet confirmed; the fourth frame confirms it.
    expect(await seg.push(audio.subarray(0, samplesFor(1080) - 1))).toEqual([]);
    expect(brief(await seg.push(audio.subarray(samplesFor(1080) - 1, samplesFor(1080))))).toEqual([['start', 1000]]);
    expect(seg.inSpeech).toBe(true);
    // 300 ms of silence from 2000 is confirmed at 2300, and dated 2000.
    expect(await seg.push(audio.subarray(samplesFor(1080), samplesFor(2300) - 1))).toEqual([]);
    expect(brief(await seg.push(audio.subarray(samplesFor(2300) - 1)))).toEqual([['end', 2000]]);
    expect(seg.inSpeech).toBe(false);
  });

  it('ignores speech shorter than minSpeechMs', async () => {
    const seg = new SpeechSegmenter(new FakeVAD({ script: FakeVAD.speechBetween([[500, 560]]) }));
    expect(await run(seg, silence(2000, RATE).samples)).toEqual([]);
  });

  it('applies hysteresis between the start and end thresholds', async () => {
    const script = timeline([
      [1000, 2000, 0.9],
      [2000, 2500, 0.4], // between the thresholds: still speaking
      [2500, 2600, 0.9],
      [2600, 2800, 0.05], // a 200 ms pause: shorter than minSilenceMs
      [2800, 3000, 0.9],
      [3000, 3100, 0.05], // silence starts here ...
      [3100, 3500, 0.4], // ... and in-between values do not cancel it
      [4000, 5000, 0.45], // below startThreshold: never starts
    ]);
    const seg = new SpeechSegmenter(new FakeVAD({ script }));
    expect(brief(await run(seg, silence(6000, RATE).samples))).toEqual([
      ['start', 1000],
      ['end', 3000],
    ]);
  });

  it('gives the same events whatever the chunk sizes', async () => {
    const make = () =>
      new SpeechSegmenter(
        new FakeVAD({
          script: FakeVAD.speechBetween([
            [300, 900],
            [1500, 2200],
          ]),
        }),
      );
    const audio = silence(3000, RATE).samples;
    const whole = brief(await run(make(), audio));
    expect(whole).toEqual([
      ['start', 300],
      ['end', 900],
      ['start', 1500],
      ['end', 2200],
    ]);
    expect(brief(await run(make(), audio, 7))).toEqual(whole);
    expect(brief(await run(make(), audio, 1999))).toEqual(whole);
  });

  it('carries the pre-roll audio with start, clamped at the stream start', async () => {
    const audio = ramp(3000);
    const seg = new SpeechSegmenter(new FakeVAD({ script: FakeVAD.speechBetween([[1000, 2000]]) }));
    const [start] = await seg.push(audio);
    if (start?.kind !== 'start') throw new Error('expected a start event');
    // 200 ms before the start, up to the end of the confirming frame (1080 ms).
    expect(start.audio.tsMs).toBe(800);
    expect(start.audio.sampleRate).toBe(RATE);
    expect(start.audio.samples).toEqual(audio.slice(samplesFor(800), samplesFor(1080)));

    const early = new SpeechSegmenter(new FakeVAD({ script: FakeVAD.speechBetween([[100, 2000]]) }));
    const [e] = await early.push(audio);
    if (e?.kind !== 'start') throw new Error('expected a start event');
    expect(e.atMs).toBe(100);
    expect(e.audio.tsMs).toBe(0);
    expect(e.audio.samples).toEqual(audio.slice(0, samplesFor(180)));
  });

  it('runs on the caller’s audio clock (originMs) and accepts Pcm', async () => {
    const seg = new SpeechSegmenter(new FakeVAD({ script: FakeVAD.speechBetween([[1000, 2000]]) }), {
      originMs: 5000,
    });
    expect(brief(await seg.push(silence(3000, RATE)))).toEqual([
      ['start', 6000],
      ['end', 7000],
    ]);
  });

  it('rejects audio at another sample rate and inverted thresholds', async () => {
    const seg = new SpeechSegmenter(new FakeVAD());
    await expect(seg.push(silence(100, 8000))).rejects.toThrow(/8000 Hz.*needs 16000 Hz/);
    expect(() => new SpeechSegmenter(new FakeVAD(), { startThreshold: 0.3, endThreshold: 0.4 })).toThrow(
      /endThreshold/,
    );
  });

  it('finish() closes an open segment at the start of trailing silence, or at the last sample', async () => {
    const trailing = new SpeechSegmenter(new FakeVAD({ script: FakeVAD.speechBetween([[100, 1000]]) }));
    expect(brief(await run(trailing, silence(1100, RATE).samples))).toEqual([
      ['start', 100],
      ['end', 1000],
    ]);
    const cut = new SpeechSegmenter(new FakeVAD({ script: FakeVAD.speechBetween([[100, 5000]]) }));
    // 1010 ms: the last 10 ms never fill a frame but still count as heard.
    expect(brief(await run(cut, silence(1010, RATE).samples))).toEqual([
      ['start', 100],
      ['end', 1010],
    ]);
    expect(await new SpeechSegmenter(new FakeVAD()).finish()).toEqual([]);
  });
});

describe('FakeVAD', () => {
  it('scores by energy by default', async () => {
    const vad = new FakeVAD();
    expect(await vad.speechProbability(new Int16Array(320).fill(8000))).toBe(0.9);
    expect(await vad.speechProbability(new Int16Array(320).fill(10))).toBe(0.05);
  });

  it('scripts by time, restarts its clock on reset(), clamps to 0..1 and checks frame length', async () => {
    const seen: number[] = [];
    const vad = new FakeVAD({ frameSamples: 160, script: ({ atMs }) => (seen.push(atMs), atMs / 10 - 0.5) });
    const frame = new Int16Array(160);
    const ps = [];
    for (let i = 0; i < 3; i++) ps.push(await vad.speechProbability(frame));
    vad.reset();
    await vad.speechProbability(frame);
    expect(seen).toEqual([0, 10, 20, 0]);
    expect(ps).toEqual([0, 0.5, 1]);
    await expect(vad.speechProbability(new Int16Array(320))).rejects.toThrow(/fake VAD: frame must be 160 samples/);
  });
});
