import { samplesForMs } from '@va/audio';
import type { Built } from './assemble.js';
import { RATE, type Plan } from './engine.js';
import type { MarkedPause, MarkedUtterance } from './types.js';

/** Measurement windows. */
export const WINDOW_MS = 10;
/** Audible = a window's RMS within this of the utterance's loudest window. */
const SPEECH_THRESHOLD_DB = -40;
/** A quiet run shorter than this is a stop closure or a breath between words, not a pause. */
export const MIN_PAUSE_MS = 150;
/** How far the measured pause may sit from where its quiet was put, and how much shorter than asked it may be. */
const PAUSE_TOLERANCE_MS = 150;

/** RMS of each WINDOW_MS window (the last may be shorter) and the audibility threshold: SPEECH_THRESHOLD_DB below the loudest. */
function windowLevels(samples: Int16Array): { rms: number[]; threshold: number } {
  const win = samplesForMs(WINDOW_MS, RATE);
  const rms: number[] = [];
  for (let i = 0; i < samples.length; i += win) {
    const end = Math.min(samples.length, i + win);
    let sum = 0;
    for (let j = i; j < end; j++) sum += samples[j]! * samples[j]!;
    rms.push(Math.sqrt(sum / (end - i)));
  }
  const peak = rms.reduce((m, r) => Math.max(m, r), 0);
  if (peak === 0) throw new Error('speakMarked: the engine produced no sound');
  return { rms, threshold: peak * 10 ** (SPEECH_THRESHOLD_DB / 20) };
}

export function audibleWindows(samples: Int16Array): boolean[] {
  const { rms, threshold } = windowLevels(samples);
  return rms.map((r) => r >= threshold);
}

interface Quiet {
  /** First inaudible sample. */
  start: number;
  /** First audible sample after it. */
  end: number;
}

/** Speech bounds and the quiet runs ≥ MIN_PAUSE_MS inside the speech. */
function measure(samples: Int16Array): { speechStart: number; speechEnd: number; quiets: Quiet[] } {
  const win = samplesForMs(WINDOW_MS, RATE);
  const { rms, threshold } = windowLevels(samples);
  const loud = rms.map((r) => r >= threshold);
  // Sample-exact edges inside a loud window: a window's RMS ≥ threshold means one of its samples is too.
  const firstAudible = (w: number) => {
    let j = w * win;
    while (Math.abs(samples[j]!) < threshold) j++;
    return j;
  };
  const lastAudible = (w: number) => {
    let j = Math.min(samples.length, (w + 1) * win) - 1;
    while (Math.abs(samples[j]!) < threshold) j--;
    return j;
  };
  const firstLoud = loud.indexOf(true);
  const lastLoud = loud.lastIndexOf(true);
  const minWindows = Math.ceil(MIN_PAUSE_MS / WINDOW_MS);
  const quiets: Quiet[] = [];
  let runStart = -1;
  for (let w = firstLoud; w <= lastLoud; w++) {
    if (!loud[w]) {
      if (runStart < 0) runStart = w;
    } else if (runStart >= 0) {
      if (w - runStart >= minWindows) quiets.push({ start: lastAudible(runStart - 1) + 1, end: firstAudible(w) });
      runStart = -1;
    }
  }
  return { speechStart: firstAudible(firstLoud), speechEnd: lastAudible(lastLoud) + 1, quiets };
}

export function measureAndCheck(
  built: Built,
  plan: Plan,
  segments: readonly string[],
  pausesMs: readonly number[],
  label: string,
): MarkedUtterance {
  const ms = (samples: number) => (samples * 1000) / RATE;
  const { speechStart, speechEnd, quiets } = measure(built.pcm.samples);
  const used = new Set<Quiet>();
  const pauses = plan.pauses.map((planned, i): MarkedPause => {
    const wordsBefore = segments.slice(0, i + 1).join(' ');
    const start = ms(built.map(planned.quietStart));
    const end = start + ms(planned.quietLength);
    const distance = (q: Quiet) => Math.max(Math.abs(ms(q.start) - start), Math.abs(ms(q.end) - end));
    const nearest = quiets.filter((q) => !used.has(q)).sort((a, b) => distance(a) - distance(b))[0];
    const length = nearest ? ms(nearest.end - nearest.start) : 0;
    if (!nearest || distance(nearest) > PAUSE_TOLERANCE_MS || length < pausesMs[i]! - PAUSE_TOLERANCE_MS) {
      const found = nearest
        ? `nearest quiet ${ms(nearest.start).toFixed(0)}–${ms(nearest.end).toFixed(0)} ms`
        : `no quiet ≥ ${MIN_PAUSE_MS} ms`;
      throw new Error(
        `speakMarked: ${label}: the ${pausesMs[i]} ms pause after "${wordsBefore}" was put at ` +
          `${start.toFixed(0)}–${end.toFixed(0)} ms but the audio has ${found}`,
      );
    }
    used.add(nearest);
    return { startMs: ms(nearest.start), endMs: ms(nearest.end), wordsBefore, style: planned.style };
  });
  return { pcm: built.pcm, pauses, speechStartMs: ms(speechStart), speechEndMs: ms(speechEnd) };
}
