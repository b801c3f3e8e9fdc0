import { heuristicEou, ngramProsodyEou, SOUNDS_FINISHED, SpeakerPitch, type SpeechTail } from '@va/providers';
import { formatSpeakerVoice } from '@va/testkit';
import type { Silence, Step } from './sweep.js';
import type { StreamedTake } from './stream.js';
import { tailBefore } from './takes.js';

/** A detector as the sweep sees it: the probability that the user is done, from the words so far and the audio. */
export interface Detector {
  name: string;
  /** Always 1 (VAD silence alone): the sweep needs one threshold only. */
  constant?: boolean;
  /** From this score the words sound finished: where the turn detector previews them. */
  finishedAt: number;
  p(text: string, speech: SpeechTail): number;
}

/** The detectors side by side: silence alone, today's word list, the new model, and the new model deaf. */
export function detectors(): Detector[] {
  const model = ngramProsodyEou();
  return [
    { name: 'vad-only', constant: true, finishedAt: 1, p: () => 1 },
    { name: 'heuristic', finishedAt: SOUNDS_FINISHED, p: (text) => heuristicEou.score(text) },
    // Without the audio the model uses its words-alone fit.
    { name: 'ngram-words', finishedAt: SOUNDS_FINISHED, p: (text) => model.score(text) },
    { name: 'ngram-prosody', finishedAt: SOUNDS_FINISHED, p: (text, speech) => model.score(text, speech) },
  ];
}

/** The longest a policy waits: no step past it matters. */
const HORIZON_MS = 3000;

/** What the user has said of the take by audio time `atMs`: the finals, then the newest partial; settled or not. */
class WordsSoFar {
  private finals: string[] = [];
  private partial = '';
  settled = false;

  apply(t: StreamedTake['transcripts'][number]['msg']): void {
    if (t.final) {
      if (t.text.trim() !== '') this.finals.push(t.text.trim());
      this.partial = '';
      this.settled = true;
    } else {
      this.partial = t.text;
      this.settled = t.stable;
    }
  }

  get text(): string {
    return [...this.finals, this.partial].join(' ').replace(/\s+/g, ' ').trim();
  }
}

/** One silence of a take as a detector saw it: what it said at its start and each time words arrived in it. */
function silence(
  take: StreamedTake,
  detector: Detector,
  label: Silence['label'],
  startMs: number,
  durationMs: number,
  speech: SpeechTail,
): Silence {
  const abs = take.offsetMs + startMs;
  const words = new WordsSoFar();
  const heard = take.transcripts; // in arrival order: atMs only grows
  let i = 0;
  for (; i < heard.length && heard[i]!.atMs <= abs; i++) words.apply(heard[i]!.msg);
  const step = (fromMs: number): Step => ({ fromMs, p: detector.p(words.text, speech), settled: words.settled });
  const steps = [step(0)];
  for (; i < heard.length && heard[i]!.atMs < abs + Math.min(durationMs, HORIZON_MS); i++) {
    words.apply(heard[i]!.msg);
    steps.push(step(heard[i]!.atMs - abs));
  }
  return { label, durationMs, steps };
}

/**
 * Every silence of a take — its pauses (holds) and its end — through one detector. `speakers`: each voice's pitch
 * range as its session learns it (one map per detector, the takes in their order).
 */
export function silencesOf(take: StreamedTake, detector: Detector, speakers: Map<string, SpeakerPitch>): Silence[] {
  const { heard } = take;
  const voice = formatSpeakerVoice(take.take.voice);
  const speaker = speakers.get(voice) ?? new SpeakerPitch();
  speakers.set(voice, speaker);
  const tail = (atMs: number): SpeechTail => ({ ...tailBefore(heard.pcm, atMs), speaker });
  const holds = heard.pauses.map((p) =>
    silence(take, detector, 'hold', p.startMs, p.endMs - p.startMs, tail(p.startMs)),
  );
  const endDuration = take.untilMs - (take.offsetMs + heard.speechEndMs);
  return [...holds, silence(take, detector, 'eot', heard.speechEndMs, endDuration, tail(heard.speechEndMs))];
}

/** What the live turn detector did with a take: turns ended inside pauses, its wait after the real end, previews. */
export interface LiveOutcome {
  holds: number;
  cutoffs: number;
  /** Wait from the real end to the turn's end; undefined when it never ended the take's turn. */
  latencyMs: number | undefined;
  previews: number;
  previewsCancelled: number;
}

export function liveOutcome(take: StreamedTake): LiveOutcome {
  const ends = take.turns.filter((t) => t.msg.kind === 'end');
  const previews = take.turns.filter((t) => t.msg.kind === 'preview');
  const cutoffs = take.heard.pauses.filter((p) =>
    ends.some((e) => e.atMs >= take.offsetMs + p.startMs && e.atMs < take.offsetMs + p.endMs),
  ).length;
  const endAt = take.offsetMs + take.heard.speechEndMs;
  const end = ends.find((e) => e.atMs >= endAt);
  return {
    holds: take.heard.pauses.length,
    cutoffs,
    latencyMs: end ? end.atMs - endAt : undefined,
    previews: previews.length,
    previewsCancelled: previews.filter((p) => take.cancelled.has(p.msg.turnId)).length,
  };
}
