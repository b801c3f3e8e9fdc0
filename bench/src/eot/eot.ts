import { SpeakerPitch } from '@va/providers';
import { EOT_VOICES, formatSpeakerVoice, parseSpeakerVoices, type MarkedUtterance } from '@va/testkit';
import { DEFAULT_CORPUS, loadCorpus, takes, type EotTake } from './corpus.js';
import { detectors, liveOutcome, silencesOf, type LiveOutcome } from './detectors.js';
import { GAP_MS, LEAD_MS, streamTakes, type Recogniser, type StreamedTake } from './stream.js';
import { cutoffAtLatency, latencyAtCutoff, paretoFrontier, previewCost, sweep, type PolicyPoint } from './sweep.js';
import { synthesizeTakes } from './takes.js';

export const EOT_BUDGETS_MS = [300, 600] as const;
export const EOT_CUTOFFS_PCT = [5, 10] as const;

/** One figure of the eot bench. `value` is null where no policy reaches the budget (eot-bench's "–"). */
export interface EotRow {
  name:
    | 'eot_false_cutoff_pct'
    | 'eot_latency_ms'
    | 'eot_previews_per_turn'
    | 'eot_preview_cancelled_pct'
    | 'eot_live_false_cutoff_pct'
    | 'eot_live_latency_ms'
    | 'eot_live_missed_turns';
  recogniser: Recogniser;
  detector: string;
  budget_ms?: number;
  cutoff_pct?: number;
  stat?: string;
  value: number | null;
  unit: string;
  /** The policy that reached it. */
  policy?: { threshold: number; action_delay_ms: number; timeout_ms: number; latency_ms: number; cutoff_pct: number };
}

export interface EotOptions {
  corpus?: string;
  voices?: string;
  seed: number;
  /** Only the first N utterances of the eval split (a quick run). */
  limit?: number;
  recognisers: readonly Recogniser[];
  onProgress?: (line: string) => void;
  /** Called with every take as streamed (what stt and the turn detector said of it), per recogniser. */
  onStreamed?: (recogniser: Recogniser, takes: StreamedTake[]) => void | Promise<void>;
}

export interface EotResult {
  rows: EotRow[];
  /** Per recogniser and detector: the trade-off curve (policies no other beats on both axes). */
  curves: Record<string, Record<string, PolicyPoint[]>>;
  takes: number;
  holds: number;
  voices: string[];
  skipped: number;
}

const round = (v: number, digits = 1) => Math.round(v * 10 ** digits) / 10 ** digits;

function policyOf(p: PolicyPoint): EotRow['policy'] {
  return {
    threshold: p.threshold,
    action_delay_ms: p.actionDelayMs,
    timeout_ms: p.timeoutMs,
    latency_ms: round(p.latencyMs),
    cutoff_pct: round(p.cutoffPct),
  };
}

/** The eval takes every voice could say (a take one voice could not is dropped for all: the sessions align). */
async function synthesizeEval(opts: EotOptions, voices: ReturnType<typeof parseSpeakerVoices>) {
  const corpus = loadCorpus(opts.corpus ?? DEFAULT_CORPUS);
  let all = takes(corpus, voices, 'eval', opts.seed);
  if (opts.limit !== undefined) {
    // Spread over the corpus (its kinds come in runs), not its first lines.
    const every = [...new Set(all.map((t) => t.text))];
    const step = Math.max(1, every.length / opts.limit);
    const texts = Array.from({ length: Math.min(opts.limit, every.length) }, (_, i) => every[Math.floor(i * step)]!);
    all = all.filter((t) => texts.includes(t.text));
  }
  const byText = new Map<string, ({ take: EotTake; heard: MarkedUtterance } | undefined)[]>();
  let failed = 0;
  await synthesizeTakes(
    all,
    (take, heard) => {
      const list = byText.get(take.text) ?? [];
      byText.set(take.text, list);
      if (heard instanceof Error) {
        failed++;
        list.push(undefined);
      } else list.push({ take, heard });
    },
    { leadMs: LEAD_MS, tailMs: GAP_MS },
  );
  const usable = [...byText.values()].filter((l) => l.length === voices.length && l.every(Boolean)) as {
    take: EotTake;
    heard: MarkedUtterance;
  }[][];
  const sessions = voices.map((_, v) => usable.map((l) => l[v]!));
  return { sessions, skipped: byText.size - usable.length, failed };
}

function sweepRows(recogniser: Recogniser, streamed: StreamedTake[], rows: EotRow[]): Record<string, PolicyPoint[]> {
  const curves: Record<string, PolicyPoint[]> = {};
  for (const detector of detectors()) {
    const speakers = new Map<string, SpeakerPitch>();
    const silences = streamed.flatMap((t) => silencesOf(t, detector, speakers));
    const points = sweep(silences, detector.constant);
    curves[detector.name] = paretoFrontier(points);
    const base = { recogniser, detector: detector.name };
    for (const budget of EOT_BUDGETS_MS) {
      const p = cutoffAtLatency(points, budget);
      rows.push({
        ...base,
        name: 'eot_false_cutoff_pct',
        budget_ms: budget,
        value: p ? round(p.cutoffPct) : null,
        unit: '%',
        ...(p ? { policy: policyOf(p) } : {}),
      });
    }
    for (const cutoff of EOT_CUTOFFS_PCT) {
      const p = latencyAtCutoff(points, cutoff);
      rows.push({
        ...base,
        name: 'eot_latency_ms',
        cutoff_pct: cutoff,
        value: p ? Math.round(p.latencyMs) : null,
        unit: 'ms',
        ...(p ? { policy: policyOf(p) } : {}),
      });
    }
    if (!detector.constant) {
      const cost = previewCost(silences, detector.finishedAt, streamed.length);
      rows.push({ ...base, name: 'eot_previews_per_turn', value: round(cost.perTurn, 2), unit: 'n' });
      rows.push({ ...base, name: 'eot_preview_cancelled_pct', value: round(cost.cancelledPct), unit: '%' });
    }
  }
  return curves;
}

/** The live turn detector (the service's default model and policy): what it really did with the takes. */
function liveRows(recogniser: Recogniser, streamed: StreamedTake[], rows: EotRow[]): void {
  const outcomes: LiveOutcome[] = streamed.map(liveOutcome);
  const base = { recogniser, detector: 'live turn-detector' };
  const holds = outcomes.reduce((n, o) => n + o.holds, 0);
  const cut = outcomes.reduce((n, o) => n + o.cutoffs, 0);
  const waits = outcomes.flatMap((o) => (o.latencyMs === undefined ? [] : [o.latencyMs])).sort((a, b) => a - b);
  const previews = outcomes.reduce((n, o) => n + o.previews, 0);
  const cancelled = outcomes.reduce((n, o) => n + o.previewsCancelled, 0);
  rows.push({ ...base, name: 'eot_live_false_cutoff_pct', value: holds ? round((100 * cut) / holds) : 0, unit: '%' });
  const mean = waits.length ? waits.reduce((a, b) => a + b, 0) / waits.length : NaN;
  rows.push({
    ...base,
    name: 'eot_live_latency_ms',
    stat: 'mean',
    value: Number.isNaN(mean) ? null : Math.round(mean),
    unit: 'ms',
  });
  const p50 = waits[Math.floor(waits.length / 2)];
  rows.push({
    ...base,
    name: 'eot_live_latency_ms',
    stat: 'p50',
    value: p50 === undefined ? null : Math.round(p50),
    unit: 'ms',
  });
  rows.push({ ...base, name: 'eot_live_missed_turns', value: outcomes.length - waits.length, unit: 'n' });
  rows.push({
    ...base,
    name: 'eot_previews_per_turn',
    value: round(previews / Math.max(1, outcomes.length), 2),
    unit: 'n',
  });
  rows.push({
    ...base,
    name: 'eot_preview_cancelled_pct',
    value: previews ? round((100 * cancelled) / previews) : 0,
    unit: '%',
  });
}

/**
 * `npm run bench -- --eot`: the eval split of the corpus, said by every voice, streamed in real time through the
 * real stt and turn-detector services once per recogniser; each detector's policy sweep over what they heard, and
 * what the live turn detector did.
 */
export async function runEot(opts: EotOptions): Promise<EotResult> {
  const progress = opts.onProgress ?? (() => undefined);
  const voices = opts.voices ? parseSpeakerVoices(opts.voices) : [...EOT_VOICES];
  progress(`synthesizing the eval split in ${voices.length} voices (${voices.map(formatSpeakerVoice).join(', ')})`);
  const { sessions, skipped, failed } = await synthesizeEval(opts, voices);
  const perVoice = sessions[0]?.length ?? 0;
  progress(
    `${perVoice} utterances × ${voices.length} voices (${skipped} utterances dropped: ${failed} takes unusable)`,
  );
  const rows: EotRow[] = [];
  const curves: EotResult['curves'] = {};
  for (const recogniser of opts.recognisers) {
    progress(`${recogniser}: streaming through stt and turn-detector`);
    const streamed = (await streamTakes({ recogniser, sessions, onProgress: progress })).flat();
    await opts.onStreamed?.(recogniser, streamed);
    curves[recogniser] = sweepRows(recogniser, streamed, rows);
    liveRows(recogniser, streamed, rows);
  }
  return {
    rows,
    curves,
    takes: perVoice * voices.length,
    holds: sessions.flat().reduce((n, t) => n + t.heard.pauses.length, 0),
    voices: voices.map(formatSpeakerVoice),
    skipped,
  };
}
