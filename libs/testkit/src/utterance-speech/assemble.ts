import { concat, dither, samplesForMs, silence, type Pcm } from '@va/audio';
import { RATE, type Plan } from './engine.js';
import { audibleWindows, WINDOW_MS } from './measure.js';

/** Same level as speech.ts's utterances(): about −80 dBFS, never digital zero. */
const DITHER = 4;
/** Kept of the engine's own silence either side of the audible speech (flite's is low noise, not zero). */
const TRIM_MARGIN_MS = 20;
/** Fade at each splice so the cut does not click. */
const FADE_MS = 5;

export interface Built {
  pcm: Pcm;
  /** Maps a sample of the plan's audio to the built audio (for points not inside a removed stretch). */
  map: (sample: number) => number;
}

/** Trims the engine's own silence, applies the splices with short fades, adds lead and tail, dithers. */
export function assemble(plan: Plan, leadMs: number, tailMs: number): Built {
  const samples = plan.pcm.samples.slice();
  const audible = audibleWindows(samples);
  const win = samplesForMs(WINDOW_MS, RATE);
  const margin = samplesForMs(TRIM_MARGIN_MS, RATE);
  const first = Math.max(0, audible.indexOf(true) * win - margin);
  const last = Math.min(samples.length, (audible.lastIndexOf(true) + 1) * win + margin) - 1;
  const splices = [...plan.splices].sort((a, b) => a.at - b.at);
  if (splices.some((s) => s.at <= first || s.at + s.remove > last)) {
    throw new Error('speakMarked: a pause falls outside the audible speech');
  }

  // Fades at every joint with quiet: the trimmed ends and each splice.
  const fade = samplesForMs(FADE_MS, RATE);
  fadeIn(samples, first, fade);
  fadeOut(samples, last + 1, fade);
  for (const { at, remove } of splices) {
    fadeOut(samples, at, fade);
    fadeIn(samples, at + remove, fade);
  }

  const lead = samplesForMs(leadMs, RATE);
  const parts: Pcm[] = [silence(leadMs, RATE)];
  let from = first;
  for (const { at, remove, insert } of splices) {
    parts.push({ samples: samples.subarray(from, at), sampleRate: RATE });
    parts.push({ samples: new Int16Array(insert), sampleRate: RATE });
    from = at + remove;
  }
  parts.push({ samples: samples.subarray(from, last + 1), sampleRate: RATE });
  parts.push(silence(tailMs, RATE));
  const joined = concat(parts, RATE);
  const map = (sample: number) =>
    sample - first + lead + splices.filter((s) => s.at < sample).reduce((n, s) => n + s.insert - s.remove, 0);
  return { pcm: { samples: dither(joined.samples, DITHER, 1), sampleRate: RATE }, map };
}

/** Ramps the `length` samples before `end` down towards 0. */
function fadeOut(samples: Int16Array, end: number, length: number): void {
  for (let j = 0; j < length && end - 1 - j >= 0; j++) {
    samples[end - 1 - j] = Math.round((samples[end - 1 - j]! * j) / length);
  }
}

/** Ramps the `length` samples from `start` up from 0. */
function fadeIn(samples: Int16Array, start: number, length: number): void {
  for (let j = 0; j < length && start + j < samples.length; j++) {
    samples[start + j] = Math.round((samples[start + j]! * j) / length);
  }
}
