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

export function checkRate(rate: number, bad: (why: string) => Error): void {
  if (!Number.isFinite(rate) || rate < MIN_RATE || rate > MAX_RATE) {
    throw bad(`rate must be a number from ${MIN_RATE} to ${MAX_RATE}`);
  }
}

/** Default speakers: every installed English voice family, some slower and some faster than normal. */
export const EOT_VOICES: readonly SpeakerVoice[] = Object.freeze(
  parseSpeakerVoices('flite:kal,flite:awb@0.9,flite:rms@1.15,flite:slt,espeak-ng:en-us@1.15,espeak-ng:en-gb@0.9'),
);
