import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { assemble } from './assemble.js';
import { planEspeak } from './espeak.js';
import { planFlite } from './flite.js';
import { measureAndCheck, MIN_PAUSE_MS } from './measure.js';
import type { MarkedUtterance, PauseStyle, SpeakMarkedOptions } from './types.js';
import { checkRate, formatSpeakerVoice, type SpeakerVoice } from './voices.js';

/**
 * Speaks `text` whose `|` markers are mid-utterance pauses of `pausesMs`, and measures from the waveform where the
 * speech and each pause really are. Throws when a pause cannot be found where it was put (the caller skips that
 * utterance × voice).
 */
export async function speakMarked(
  text: string,
  pausesMs: readonly number[],
  voice: SpeakerVoice,
  opts: SpeakMarkedOptions = {},
): Promise<MarkedUtterance> {
  const { leadMs = 300, tailMs = 2000 } = opts;
  const segments = text.split('|').map((s) => s.trim().replace(/\s+/g, ' '));
  const markers = segments.length - 1;
  if (pausesMs.length !== markers) {
    throw new Error(`speakMarked: "${text}" has ${markers} | markers but ${pausesMs.length} pause lengths`);
  }
  if (segments.some((s) => s === '')) {
    throw new Error(`speakMarked: "${text}": every | must have words on both sides`);
  }
  for (const ms of pausesMs) {
    if (!Number.isFinite(ms) || ms < MIN_PAUSE_MS) {
      throw new Error(`speakMarked: pause ${ms} ms is shorter than the ${MIN_PAUSE_MS} ms a pause can be measured at`);
    }
  }
  const asked: PauseStyle[] = opts.styles ? [...opts.styles] : pausesMs.map(() => 'phrase');
  if (asked.length !== markers) {
    throw new Error(`speakMarked: "${text}" has ${markers} | markers but ${asked.length} pause styles`);
  }
  if (!(leadMs >= 0 && tailMs >= 0)) throw new Error('speakMarked: leadMs and tailMs must be ≥ 0');
  checkRate(voice.rate, (why) => new Error(`speakMarked: voice ${formatSpeakerVoice(voice)}: ${why}`));

  const label = `"${text}" with ${formatSpeakerVoice(voice)}`;
  const dir = await mkdtemp(path.join(tmpdir(), 'va-marked-'));
  try {
    const plan =
      voice.engine === 'flite'
        ? await planFlite(segments, pausesMs, asked, voice, dir, label)
        : await planEspeak(segments, pausesMs, voice, dir);
    const built = assemble(plan, leadMs, tailMs);
    return measureAndCheck(built, plan, segments, pausesMs, label);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
