import { describe, expect, it } from 'vitest';
import { prosodyOf, type SpeechTail } from '../src/eou/prosody.js';

const RATE = 16000;

/** A voiced-like tone (fundamental plus two harmonics) gliding from `fromHz` to `toHz`, its level ramped. */
function glide(ms: number, fromHz: number, toHz: number, fromGain = 0.3, toGain = 0.3): SpeechTail {
  const n = Math.round((ms / 1000) * RATE);
  const samples = new Int16Array(n);
  let phase = 0;
  for (let i = 0; i < n; i++) {
    const t = i / n;
    const hz = fromHz * Math.pow(toHz / fromHz, t);
    phase += (2 * Math.PI * hz) / RATE;
    const gain = fromGain + (toGain - fromGain) * t;
    const v = Math.sin(phase) + 0.5 * Math.sin(2 * phase) + 0.25 * Math.sin(3 * phase);
    samples[i] = Math.round(v * gain * 16000);
  }
  return { samples, sampleRate: RATE };
}

describe('prosody of the speech before a pause', () => {
  it('hears a falling pitch as a fall and a rising one as a rise', () => {
    const fall = prosodyOf(glide(800, 220, 140));
    const rise = prosodyOf(glide(800, 140, 220));
    expect(fall.pitchSlope).toBeLessThan(-5);
    expect(rise.pitchSlope).toBeGreaterThan(5);
    expect(fall.finalPitch).toBeLessThan(0);
    expect(rise.finalPitch).toBeGreaterThan(0);
  });

  it('hears a fade as falling energy and a steady tone as level', () => {
    expect(prosodyOf(glide(800, 180, 180, 0.4, 0.05)).energySlope).toBeLessThan(-20);
    expect(Math.abs(prosodyOf(glide(800, 180, 180)).energySlope)).toBeLessThan(5);
  });

  it('measures the last voiced run, past trailing quiet', () => {
    const tone = glide(400, 180, 180).samples;
    const samples = new Int16Array(tone.length + RATE / 10 + 3200);
    samples.set(tone.subarray(0, 1600)); // 100 ms voiced, 100 ms quiet, then 300 ms voiced, then 200 ms quiet
    samples.set(tone.subarray(1600, 1600 + 4800), 3200);
    const p = prosodyOf({ samples, sampleRate: RATE });
    expect(p.finalVoicedMs).toBeGreaterThanOrEqual(250);
    expect(p.finalVoicedMs).toBeLessThanOrEqual(320);
  });

  it('gives neutral values for noise or nothing, never NaN', () => {
    const noise = new Int16Array(RATE);
    let x = 7;
    for (let i = 0; i < noise.length; i++) noise[i] = ((x = (x * 1103515245 + 12345) >>> 0) % 2000) - 1000;
    for (const tail of [
      { samples: noise, sampleRate: RATE },
      { samples: new Int16Array(0), sampleRate: RATE },
    ]) {
      const p = prosodyOf(tail);
      for (const v of Object.values(p)) expect(Number.isFinite(v)).toBe(true);
      expect(p.voicedShare).toBeLessThan(0.3);
    }
  });
});
