import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { readWav, resample, samplesForMs, type Pcm } from '@va/audio';
import { endsInPunctuation, RATE, run, type Plan, type PlannedPause } from './engine.js';
import type { SpeakerVoice } from './voices.js';

/** espeak-ng's default speed, words per minute. */
const ESPEAK_WPM = 175;
const ESPEAK_PACKAGE = 'espeak-ng';

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

export async function planEspeak(
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
