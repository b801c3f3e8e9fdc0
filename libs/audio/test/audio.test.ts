import { afterEach, describe, expect, it, vi } from 'vitest';
import { FrameClock, Framer, frames, NoiseFloor, readWav, resample, writeWav, writeWavChannels } from '@va/audio';

describe('FrameClock', () => {
  afterEach(() => vi.useRealTimers());

  it('anchors the audio clock to the arrival of the newest frame', () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const clock = new FrameClock();
    clock.observe(400, 320, 16000); // the frame 400..420 ms arrives now
    expect(clock.latestMs).toBe(420);
    expect(clock.wallOf(420)).toBe(1_000_000);
    expect(clock.wallOf(300)).toBe(1_000_000 - 120);
    vi.advanceTimersByTime(50);
    expect(clock.now()).toBe(470);
  });

  it('counts as heard at most one frame past the newest while frames flow, the wall clock once they stop', () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const clock = new FrameClock();
    clock.observe(400, 320, 16000);
    vi.advanceTimersByTime(10);
    expect(clock.heard(20, 250)).toBe(430);
    // A consumer 200 ms behind its frames has not heard those 200 ms: they may hold speech.
    vi.advanceTimersByTime(190);
    expect(clock.heard(20, 250)).toBe(440);
    // No frame for 250 ms: the input stopped, and silence is all there is.
    vi.advanceTimersByTime(50);
    expect(clock.heard(20, 250)).toBe(670);
  });
});

describe('PCM helpers', () => {
  const tone = Int16Array.from({ length: 16000 }, (_, i) =>
    Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / 16000)),
  );

  it('round-trips WAV, mono and multi-channel (channel 0 read back)', () => {
    const back = readWav(writeWav({ samples: tone, sampleRate: 16000 }));
    expect(back.sampleRate).toBe(16000);
    expect(Array.from(back.samples.subarray(0, 50))).toEqual(Array.from(tone.subarray(0, 50)));
    const stereo = readWav(writeWavChannels([tone, new Int16Array(10)], 16000));
    expect(stereo.samples.length).toBe(tone.length);
  });

  it('frames and re-chunks without losing samples', () => {
    expect(
      frames({ samples: tone, sampleRate: 16000 }, 20)
        .map((f) => f.samples.length)
        .slice(0, 2),
    ).toEqual([320, 320]);
    const framer = new Framer(512);
    const out = [...framer.push(tone.subarray(0, 700)), ...framer.push(tone.subarray(700, 1100))];
    expect(out.map((f) => f.length)).toEqual([512, 512]);
    expect(framer.flush()?.length).toBe(1100 - 1024);
  });

  it('frames PCM16 little-endian bytes in chunks of any size, a sample split across two chunks included', () => {
    const samples = Int16Array.from({ length: 700 }, (_, i) => (i % 2 === 0 ? i * 37 : -i * 41));
    const bytes = new Uint8Array(samples.buffer);
    const framer = new Framer(320);
    const out = [
      ...framer.pushBytes(bytes.subarray(0, 333)),
      ...framer.pushBytes(bytes.subarray(333, 901)),
      ...framer.pushBytes(bytes.subarray(901)),
    ];
    expect(out.map((f) => f.length)).toEqual([320, 320]);
    expect(framer.buffered).toBe(60);
    expect([...out[0]!, ...out[1]!, ...framer.flush()!]).toEqual([...samples]);
  });

  it('resamples to the requested rate', async () => {
    const up = await resample({ samples: tone, sampleRate: 16000 }, 48000);
    expect(up.sampleRate).toBe(48000);
    expect(up.samples.length).toBe(48000);
  });
});

describe('NoiseFloor', () => {
  it('is the quietest level of the last window, never below its minimum, and forgets older levels', () => {
    const floor = new NoiseFloor({ windowMs: 100, minDbfs: -65 });
    expect(floor.dbfs).toBe(Infinity); // nothing heard yet
    expect(floor.levelOf(new Int16Array(320))).toBe(-105); // digital zero stays a number
    floor.observe(-50, 20);
    floor.observe(-70, 20); // below the minimum: the floor stops there
    expect(floor.dbfs).toBe(-65);
    for (let i = 0; i < 5; i++) floor.observe(-30, 20); // 100 ms of louder audio: the quiet moments are gone
    expect(floor.dbfs).toBe(-30);
    floor.reset();
    expect(floor.dbfs).toBe(Infinity);
  });
});
