import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { concat, dither, readWav, resample, samplesForMs, silence, type Pcm } from '@va/audio';

/** One synthetic speaker for the end-of-turn benchmark. */
export interface SpeakerVoice {
  engine: 'flite' | 'espeak-ng';
  voice: string;
  /** 1 = the engine's normal speed; 1.2 = 20 % faster */
  rate: number;
}

const ENGINES: readonly SpeakerVoice['engine'][] = ['flite', 'espeak-ng'];
/** Beyond these the engines' speech stops sounding like anyone talking. */
const MIN_RATE = 0.25;
const MAX_RATE = 4;

/** "flite:kal,flite:slt@1.15,espeak-ng:en-us@0.9" → voices (rate defaults to 1); a clear Error on a bad entry. */
export function parseSpeakerVoices(spec: string): SpeakerVoice[] {
  const entries = spec
    .split(',')
    .map((e) => e.trim())
    .filter(Boolean);
  if (entries.length === 0) throw new Error(`parseSpeakerVoices: no voices in "${spec}"`);
  return entries.map((entry) => {
    const m = /^([^:@\s]+):([^:@\s]+)(?:@(.+))?$/.exec(entry);
    const bad = (why: string) =>
      new Error(`parseSpeakerVoices: bad voice "${entry}" (${why}); expected engine:voice[@rate], e.g. flite:slt@1.15`);
    if (!m) throw bad('not engine:voice[@rate]');
    const engine = m[1] as SpeakerVoice['engine'];
    if (!ENGINES.includes(engine)) throw bad(`engine must be one of ${ENGINES.join(', ')}`);
    const rate = m[3] === undefined ? 1 : Number(m[3]);
    checkRate(rate, bad);
    return { engine, voice: m[2]!, rate };
  });
}

/** The inverse of parseSpeakerVoices for one voice: "flite:slt@1.15". */
export function formatSpeakerVoice(v: SpeakerVoice): string {
  return `${v.engine}:${v.voice}${v.rate === 1 ? '' : `@${v.rate}`}`;
}

function checkRate(rate: number, bad: (why: string) => Error): void {
  if (!Number.isFinite(rate) || rate < MIN_RATE || rate > MAX_RATE) {
    throw bad(`rate must be a number from ${MIN_RATE} to ${MAX_RATE}`);
  }
}

/** Default speakers: every installed English voice family, some slower and some faster than normal. */
export const EOT_VOICES: readonly SpeakerVoice[] = Object.freeze(
  parseSpeakerVoices('flite:kal,flite:awb@0.9,flite:rms@1.15,flite:slt,espeak-ng:en-us@1.15,espeak-ng:en-gb@0.9'),
);

/**
 * 'phrase': the pause is a prosodic phrase break (continuation intonation, as after a comma).
 * 'cut': no prosodic cue: the sentence is spoken straight through and quiet is spliced in at the word boundary.
 */
export type PauseStyle = 'phrase' | 'cut';

export interface MarkedPause {
  /** Last audible sample before the pause, ms from the start of pcm. */
  startMs: number;
  /** First audible sample after it. */
  endMs: number;
  /** All words spoken before the pause, space-separated. */
  wordsBefore: string;
  /** The style actually used (a 'cut' the engine cannot do falls back to 'phrase'). */
  style: PauseStyle;
}

export interface MarkedUtterance {
  /** 16 kHz mono PCM16, light dither (never digital zero), `leadMs` of quiet before the speech and `tailMs` after. */
  pcm: Pcm;
  /** Each marked pause as measured in the audio: speech stops at startMs, resumes at endMs; wordsBefore = the words spoken before it. */
  pauses: MarkedPause[];
  /** Where the speech really ends (last audible sample of the last word), ms from the start of pcm. */
  speechEndMs: number;
  speechStartMs: number;
}

export interface SpeakMarkedOptions {
  /** One per marker; default 'phrase'. */
  styles?: readonly PauseStyle[];
  /** Quiet before the speech, ms (plus up to 20 ms of the engine's own, before the first sound). Default 300. */
  leadMs?: number;
  /** Quiet after the speech, ms. Default 2000: room for a turn detector to decide. */
  tailMs?: number;
}

const RATE = 16000;
/** Same level as speech.ts's utterances(): about −80 dBFS, never digital zero. */
const DITHER = 4;
/** Measurement windows. */
const WINDOW_MS = 10;
/** Audible = a window's RMS within this of the utterance's loudest window. */
const SPEECH_THRESHOLD_DB = -40;
/** A quiet run shorter than this is a stop closure or a breath between words, not a pause. */
export const MIN_PAUSE_MS = 150;
/** How far the measured pause may sit from where its quiet was put, and how much shorter than asked it may be. */
const PAUSE_TOLERANCE_MS = 150;
/** Kept of the engine's own silence either side of the audible speech (flite's is low noise, not zero). */
const TRIM_MARGIN_MS = 20;
/** Fade at each splice so the cut does not click. */
const FADE_MS = 5;
/** espeak-ng's default speed, words per minute. */
const ESPEAK_WPM = 175;

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

/** A change at one point of the synthesized audio: `remove` samples taken out at `at`, `insert` samples of quiet put in. */
interface Splice {
  at: number;
  remove: number;
  insert: number;
}

/** Where each marker's quiet is in the engine's audio (16 kHz samples), before trimming and splicing. */
interface PlannedPause {
  quietStart: number;
  /** Length of the quiet after splicing. */
  quietLength: number;
  style: PauseStyle;
}

interface Plan {
  /** The engine's audio at 16 kHz, its own leading and trailing silence included. */
  pcm: Pcm;
  splices: Splice[];
  pauses: PlannedPause[];
}

interface Phone {
  phone: string;
  /** End time, s. */
  end: number;
}

const FLITE_PACKAGE = 'flite';
const ESPEAK_PACKAGE = 'espeak-ng';

async function run(binary: string, debianPackage: string, args: readonly string[]): Promise<string> {
  try {
    const { stdout } = await promisify(execFile)(binary, args);
    return stdout;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new Error(`speakMarked: the \`${binary}\` binary is not installed (apt-get install ${debianPackage})`);
    }
    const stderr = (err as { stderr?: string }).stderr?.trim();
    throw new Error(`speakMarked: ${binary} failed: ${stderr || (err as Error).message}`);
  }
}

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
/** A comma would follow other punctuation: there is a phrase break there already. */
const endsInPunctuation = (s: string) => /[,.;:!?]$/.test(s);

/** The words with each marker rendered for flite: a comma for a phrase break, nothing for a cut. */
function fliteText(segments: readonly string[], styles: readonly PauseStyle[]): string {
  return segments.reduce((acc, seg, i) => {
    const sep = styles[i - 1] === 'phrase' && !endsInPunctuation(acc) ? ', ' : ' ';
    return acc + sep + seg;
  });
}

async function planFlite(
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
    /** Index in `full` of the last phone before marker i, when the words before it alone are the same phones. */
    const lastBefore = prefixes.map((prefix) =>
      prefix.length > 0 && prefix.length < spoken.length && prefix.every((p, j) => spoken[j]!.phone === p.phone)
        ? spoken[prefix.length - 1]!.index
        : undefined,
    );
    const fallback = styles.findIndex(
      (style, i) =>
        style === 'cut' &&
        // Said differently alone, or flite made a phrase break there of its own accord (punctuation): not a cut.
        (lastBefore[i] === undefined || isPause(full[lastBefore[i]! + 1]!)),
    );
    if (fallback >= 0) {
      styles[fallback] = 'phrase';
      continue;
    }

    const pcm = await resample(readWav(await readFile(file)), RATE);
    const at = (seconds: number) => Math.min(pcm.samples.length, Math.round(seconds * RATE));
    const internalPauses = full.filter((s, i) => isPause(s) && i > 0 && i < full.length - 1);
    const phraseMarkers = styles.filter((s) => s === 'phrase').length;
    const splices: Splice[] = [];
    const pauses = styles.map((style, i): PlannedPause => {
      const wanted = samplesForMs(pausesMs[i]!, RATE);
      const lastIndex = lastBefore[i];
      if (style === 'cut') {
        const cut = at(full[lastIndex!]!.end);
        splices.push({ at: cut, remove: 0, insert: wanted });
        return { quietStart: cut, quietLength: wanted, style };
      }
      // The comma's pau: right after the prefix's phones, or else (the prefix alone said differently) the
      // phrase marker's ordinal among flite's pauses when flite made one per phrase marker and no others.
      let pau = lastIndex === undefined ? undefined : full[lastIndex + 1];
      if (pau === undefined || !isPause(pau)) {
        pau =
          internalPauses.length === phraseMarkers
            ? internalPauses[styles.slice(0, i).filter((s) => s === 'phrase').length]
            : undefined;
      }
      if (pau === undefined) {
        throw new Error(
          `speakMarked: ${label}: flite made no phrase break after "${segments.slice(0, i + 1).join(' ')}"`,
        );
      }
      const pauIndex = full.indexOf(pau);
      const start = at(full[pauIndex - 1]!.end);
      const end = at(pau.end);
      const middle = Math.round((start + end) / 2);
      const have = end - start;
      if (wanted >= have) {
        splices.push({ at: middle, remove: 0, insert: wanted - have });
        return { quietStart: start, quietLength: wanted, style };
      }
      // The engine's break is longer than asked: take quiet out of its middle, keeping a little either side.
      const keep = samplesForMs(20, RATE);
      const remove = Math.max(0, Math.min(have - wanted, have - 2 * keep));
      splices.push({ at: middle - Math.floor(remove / 2), remove, insert: 0 });
      return { quietStart: start, quietLength: have - remove, style };
    });
    return { pcm, splices, pauses };
  }
}

function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * espeak-ng SSML with a break at each marker. A comma before each break: a bare <break> ends the clause with
 * espeak's "no intonation" tune, the comma gives continuation intonation, and espeak still keeps the break's time.
 */
function espeakSsml(segments: readonly string[], pausesMs: readonly number[]): string {
  let body = escapeXml(segments[0]!);
  for (let i = 1; i < segments.length; i++) {
    const comma = endsInPunctuation(segments[i - 1]!) ? '' : ',';
    body += `${comma} <break time="${Math.round(pausesMs[i - 1]!)}ms"/> ${escapeXml(segments[i]!)}`;
  }
  return `<speak>${body}</speak>`;
}

/** Added to one break to find where it ends (see planEspeak). */
const ESPEAK_PROBE_EXTRA_MS = 500;

async function planEspeak(
  segments: readonly string[],
  pausesMs: readonly number[],
  voice: SpeakerVoice,
  dir: string,
): Promise<Plan> {
  const synth = async (breaksMs: readonly number[], name: string): Promise<Pcm> => {
    const file = path.join(dir, name);
    const speed = String(Math.round(ESPEAK_WPM * voice.rate));
    // -m: SSML; -z: no sentence-final pause (the lead and tail are ours).
    const ssml = espeakSsml(segments, breaksMs);
    await run('espeak-ng', ESPEAK_PACKAGE, ['-m', '-z', '-v', voice.voice, '-s', speed, '-w', file, ssml]);
    return readWav(await readFile(file));
  };
  // espeak-ng prints no timings, but it is deterministic: with one break made longer the audio is the same
  // sample for sample until the speech resumes after that break in the shorter version. (Synthesizing the words
  // up to a break alone is no help: espeak adds ~100 ms of its own at the end of the text, even with -z.)
  const [native, ...longer] = await Promise.all([
    synth(pausesMs, 'utterance.wav'),
    ...pausesMs.map((_, i) =>
      synth(
        pausesMs.map((ms, j) => (j === i ? ms + ESPEAK_PROBE_EXTRA_MS : ms)),
        `longer-${i}.wav`,
      ),
    ),
  ]);
  const pauses = longer.map((probe, i): PlannedPause => {
    const a = native!.samples;
    const b = probe.samples;
    let resume = 0;
    while (resume < a.length && a[resume] === b[resume]) resume++;
    if (resume === a.length) throw new Error(`speakMarked: espeak-ng ignored the break after "${segments[i]}"`);
    const wanted = samplesForMs(pausesMs[i]!, RATE);
    const quietEnd = Math.round((resume * RATE) / native!.sampleRate);
    return { quietStart: quietEnd - wanted, quietLength: wanted, style: 'phrase' };
  });
  return { pcm: await resample(native!, RATE), splices: [], pauses };
}

interface Built {
  pcm: Pcm;
  /** Maps a sample of the plan's audio to the built audio (for points not inside a removed stretch). */
  map: (sample: number) => number;
}

/** Trims the engine's own silence, applies the splices with short fades, adds lead and tail, dithers. */
function assemble(plan: Plan, leadMs: number, tailMs: number): Built {
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

function audibleWindows(samples: Int16Array): boolean[] {
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

function measureAndCheck(
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
