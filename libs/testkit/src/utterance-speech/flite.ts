import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { readWav, resample, samplesForMs, type Pcm } from '@va/audio';
import { endsInPunctuation, RATE, run, type Plan, type PlannedPause, type Splice } from './engine.js';
import type { PauseStyle } from './types.js';
import type { SpeakerVoice } from './voices.js';

interface Phone {
  phone: string;
  /** End time, s. */
  end: number;
}

const FLITE_PACKAGE = 'flite';

let fliteVoiceList: Promise<string[]> | undefined;

/**
 * flite quietly substitutes its default voice for an unknown name (or a .flitevox it cannot load, exiting 0), so
 * only the voices it lists are accepted.
 */
async function checkFliteVoice(voice: string): Promise<void> {
  fliteVoiceList ??= run('flite', FLITE_PACKAGE, ['-lv']).then(
    (out) => out.replace(/^.*?:/, '').trim().split(/\s+/),
    (err: unknown) => {
      fliteVoiceList = undefined;
      throw err;
    },
  );
  const known = await fliteVoiceList;
  if (!known.includes(voice)) {
    throw new Error(`speakMarked: flite has no voice "${voice}" (it has ${known.join(', ')})`);
  }
}

function fliteArgs(voice: SpeakerVoice): string[] {
  return ['-voice', voice.voice, '--setf', `duration_stretch=${(1 / voice.rate).toFixed(4)}`, '-psdur'];
}

/** flite -psdur prints `phone:endTime` for every segment. */
function parsePhones(stdout: string): Phone[] {
  return stdout
    .trim()
    .split(/\s+/)
    .map((token) => {
      const m = /^(.+):(\d+(?:\.\d+)?)$/.exec(token);
      if (!m) throw new Error(`speakMarked: unexpected flite -psdur output "${token}"`);
      return { phone: m[1]!, end: Number(m[2]) };
    });
}

const isPause = (p: Phone) => p.phone === 'pau';

/** The words with each marker rendered for flite: a comma for a phrase break, nothing for a cut. */
function fliteText(segments: readonly string[], styles: readonly PauseStyle[]): string {
  return segments.reduce((acc, seg, i) => {
    const sep = styles[i - 1] === 'phrase' && !endsInPunctuation(acc) ? ', ' : ' ';
    return acc + sep + seg;
  });
}

/** flite's phones for the whole text, and where each marker falls among them. */
interface FliteTiming {
  full: Phone[];
  /** Index in `full` of the last phone before marker i, when the words before it alone are the same phones. */
  lastBefore: (number | undefined)[];
}

export async function planFlite(
  segments: readonly string[],
  pausesMs: readonly number[],
  asked: readonly PauseStyle[],
  voice: SpeakerVoice,
  dir: string,
  label: string,
): Promise<Plan> {
  await checkFliteVoice(voice.voice);
  const styles = [...asked];
  const file = path.join(dir, 'utterance.wav');
  // A cut that flite cannot place becomes a phrase break, which changes the text: synthesize again until settled.
  for (;;) {
    const timing = await synthesizeFlite(segments, styles, voice, file);
    const fallback = firstUnplaceableCut(styles, timing);
    if (fallback >= 0) {
      styles[fallback] = 'phrase';
      continue;
    }
    const pcm = await resample(readWav(await readFile(file)), RATE);
    return placeFlitePauses(pcm, timing, styles, pausesMs, segments, label);
  }
}

/** Synthesizes the whole text into `file`, and the words before each marker alone to line their phones up with it. */
async function synthesizeFlite(
  segments: readonly string[],
  styles: readonly PauseStyle[],
  voice: SpeakerVoice,
  file: string,
): Promise<FliteTiming> {
  const full = parsePhones(
    await run('flite', FLITE_PACKAGE, [...fliteArgs(voice), '-t', fliteText(segments, styles), '-o', file]),
  );
  // The words before each marker alone: how many phones they are, and which.
  const prefixes = await Promise.all(
    styles.map(async (_, i) =>
      parsePhones(
        await run('flite', FLITE_PACKAGE, [
          ...fliteArgs(voice),
          '-t',
          fliteText(segments.slice(0, i + 1), styles),
          '-o',
          'none',
        ]),
      ).filter((s) => !isPause(s)),
    ),
  );
  const spoken = full.map((s, index) => ({ ...s, index })).filter((s) => !isPause(s));
  const lastBefore = prefixes.map((prefix) =>
    prefix.length > 0 && prefix.length < spoken.length && prefix.every((p, j) => spoken[j]!.phone === p.phone)
      ? spoken[prefix.length - 1]!.index
      : undefined,
  );
  return { full, lastBefore };
}

/** The first marker asked to be a cut that flite cannot place as one, or -1. */
function firstUnplaceableCut(styles: readonly PauseStyle[], { full, lastBefore }: FliteTiming): number {
  return styles.findIndex(
    (style, i) =>
      style === 'cut' &&
      // Said differently alone, or flite made a phrase break there of its own accord (punctuation): not a cut.
      (lastBefore[i] === undefined || isPause(full[lastBefore[i]! + 1]!)),
  );
}

/** The splices that make each marker's quiet the length asked, and where that quiet is in flite's audio. */
function placeFlitePauses(
  pcm: Pcm,
  timing: FliteTiming,
  styles: readonly PauseStyle[],
  pausesMs: readonly number[],
  segments: readonly string[],
  label: string,
): Plan {
  const { full, lastBefore } = timing;
  const at = (seconds: number) => Math.min(pcm.samples.length, Math.round(seconds * RATE));
  const splices: Splice[] = [];
  const pauses = styles.map((style, i): PlannedPause => {
    const wanted = samplesForMs(pausesMs[i]!, RATE);
    if (style === 'cut') {
      const cut = at(full[lastBefore[i]!]!.end);
      splices.push({ at: cut, remove: 0, insert: wanted });
      return { quietStart: cut, quietLength: wanted, style };
    }
    const pau = phraseBreakPau(timing, styles, i);
    if (pau === undefined) {
      throw new Error(
        `speakMarked: ${label}: flite made no phrase break after "${segments.slice(0, i + 1).join(' ')}"`,
      );
    }
    const start = at(full[full.indexOf(pau) - 1]!.end);
    const { splice, quietLength } = fitPhraseBreak(start, at(pau.end), wanted);
    splices.push(splice);
    return { quietStart: start, quietLength, style };
  });
  return { pcm, splices, pauses };
}

/**
 * The comma's pau for phrase marker i: right after the prefix's phones, or else (the prefix alone said differently)
 * the phrase marker's ordinal among flite's pauses when flite made one per phrase marker and no others.
 */
function phraseBreakPau(
  { full, lastBefore }: FliteTiming,
  styles: readonly PauseStyle[],
  i: number,
): Phone | undefined {
  const lastIndex = lastBefore[i];
  const pau = lastIndex === undefined ? undefined : full[lastIndex + 1];
  if (pau !== undefined && isPause(pau)) return pau;
  const internalPauses = full.filter((s, j) => isPause(s) && j > 0 && j < full.length - 1);
  const phraseMarkers = styles.filter((s) => s === 'phrase').length;
  return internalPauses.length === phraseMarkers
    ? internalPauses[styles.slice(0, i).filter((s) => s === 'phrase').length]
    : undefined;
}

/** The splice that makes flite's break from `start` to `end` (samples) last `wanted` samples, and the quiet it leaves. */
function fitPhraseBreak(start: number, end: number, wanted: number): { splice: Splice; quietLength: number } {
  const middle = Math.round((start + end) / 2);
  const have = end - start;
  if (wanted >= have) {
    return { splice: { at: middle, remove: 0, insert: wanted - have }, quietLength: wanted };
  }
  // The engine's break is longer than asked: take quiet out of its middle, keeping a little either side.
  const keep = samplesForMs(20, RATE);
  const remove = Math.max(0, Math.min(have - wanted, have - 2 * keep));
  return { splice: { at: middle - Math.floor(remove / 2), remove, insert: 0 }, quietLength: have - remove };
}
