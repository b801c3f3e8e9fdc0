import { rmsDbfs } from '@va/audio';
import { z } from 'zod';
import type { AudioChunk, STT, TranscriptEvent } from '../types.js';
import { AsyncQueue } from '@va/stream';

export interface TimedSttOptions {
  /** The final arrives this long after the speech ended (wall clock), like a cloud recogniser's. */
  finalDelayMs: number;
  /** A partial every this much audio while the user speaks. */
  partialEveryMs: number;
  /** What each successive utterance "said" (cycled): the fake hears timing, not words. */
  texts: readonly string[];
  /** Frames louder than this are speech. */
  speechDbfs: number;
  /** Silence that closes an utterance (the end is dated at the silence's start). */
  endSilenceMs: number;
  /** Sound shorter than this has no words (a cough, a click): no partials, no final, no text used up. */
  minSpeechMs: number;
  sampleRate: number;
}

export const TIMED_STT_DEFAULTS = {
  finalDelayMs: 100,
  partialEveryMs: 100,
  texts: ['hello there'],
  speechDbfs: -45,
  endSilenceMs: 60,
  minSpeechMs: 0,
  sampleRate: 16000,
} as const satisfies TimedSttOptions;

/**
 * A recogniser with a cloud provider's timing and no words of its own, for benchmarks: it finds speech by
 * energy, sends partials while the user speaks, and the final `finalDelayMs` after the speech ended — so a
 * benchmark profile ("final 100 ms after speech end") is what the pipeline really experiences.
 */
export class TimedSTT implements STT {
  readonly provider = 'timed';
  readonly sampleRate: number;
  private readonly opts: TimedSttOptions;

  constructor(opts: Partial<TimedSttOptions> = {}) {
    this.opts = { ...TIMED_STT_DEFAULTS, ...opts };
    this.sampleRate = this.opts.sampleRate;
  }

  async *transcribe(audio: AsyncIterable<AudioChunk>, signal: AbortSignal): AsyncGenerator<TranscriptEvent> {
    if (signal.aborted) return;
    // Each stream is a new conversation: the scripted texts start over.
    const stream = new TimedStream(this.opts);
    const pump = async () => {
      try {
        for await (const chunk of audio) {
          // Aborted: stop reading the input too.
          if (signal.aborted) return;
          stream.heard(chunk);
        }
        await stream.end();
      } catch (err) {
        stream.events.fail(err);
      }
    };
    const stop = () => stream.stop();
    signal.addEventListener('abort', stop, { once: true });
    try {
      void pump();
      yield* stream.events;
    } finally {
      signal.removeEventListener('abort', stop);
      stop();
    }
  }
}

/** One utterance being heard: where it started, its last voiced audio (audio clock and wall clock), its text. */
interface Speech {
  startMs: number;
  lastVoiceMs: number;
  lastVoiceWall: number;
  nextPartialMs: number;
  text?: string;
}

/** One stream of TimedSTT: speech found by energy, partials while it lasts, the final `finalDelayMs` after it. */
class TimedStream {
  readonly events = new AsyncQueue<TranscriptEvent>();
  private utterance = 0;
  /** A final waiting for its delay; sent at once if anything newer is about to go out, so order holds. */
  private pendingFinal: { event: TranscriptEvent; timer: NodeJS.Timeout } | undefined;
  private readonly timers = new Set<NodeJS.Timeout>();
  private clockMs = 0;
  private speech: Speech | undefined;

  constructor(private readonly opts: TimedSttOptions) {}

  heard(chunk: AudioChunk): void {
    const { partialEveryMs, endSilenceMs, speechDbfs } = this.opts;
    const startMs = chunk.tsMs ?? this.clockMs;
    this.clockMs = startMs + (chunk.samples.length * 1000) / chunk.sampleRate;
    const clockMs = this.clockMs;
    if (rmsDbfs(chunk.samples) > speechDbfs) {
      this.speech ??= {
        startMs,
        lastVoiceMs: clockMs,
        lastVoiceWall: Date.now(),
        nextPartialMs: startMs + partialEveryMs,
      };
      this.speech.lastVoiceMs = clockMs;
      this.speech.lastVoiceWall = Date.now();
    }
    const speech = this.speech;
    if (!speech) return;
    const text = this.wordsOf(speech);
    if (text !== undefined && clockMs >= speech.nextPartialMs && clockMs - speech.lastVoiceMs < endSilenceMs) {
      this.flushFinal();
      speech.nextPartialMs = Math.max(speech.nextPartialMs + partialEveryMs, clockMs);
      this.events.push({
        text: partialWords(text, clockMs, speech),
        final: false,
        stable: false,
        confidence: 0.5,
        startMs: speech.startMs,
        endMs: clockMs,
      });
    }
    if (clockMs - speech.lastVoiceMs >= endSilenceMs) {
      this.finish(speech);
      this.speech = undefined;
    }
  }

  /** The input ended: the utterance in progress gets its final, then the stream ends once it is out. */
  async end(): Promise<void> {
    if (this.speech) this.finish(this.speech);
    await new Promise((r) => setTimeout(r, this.opts.finalDelayMs + 5));
    this.events.end();
  }

  stop(): void {
    for (const t of this.timers) clearTimeout(t);
    this.events.cancel();
  }

  /** Words belong to speech long enough to hold some: the text is taken when it gets there. */
  private wordsOf(s: Speech): string | undefined {
    if (s.lastVoiceMs - s.startMs < this.opts.minSpeechMs) return undefined;
    return (s.text ??= this.opts.texts[this.utterance++ % this.opts.texts.length]!);
  }

  private flushFinal(): void {
    if (!this.pendingFinal) return;
    clearTimeout(this.pendingFinal.timer);
    this.timers.delete(this.pendingFinal.timer);
    this.events.push(this.pendingFinal.event);
    this.pendingFinal = undefined;
  }

  private finish(s: Speech): void {
    const text = this.wordsOf(s);
    if (text === undefined) return;
    const event: TranscriptEvent = {
      text,
      final: true,
      stable: true,
      confidence: 0.95,
      startMs: s.startMs,
      endMs: s.lastVoiceMs,
    };
    this.flushFinal();
    const wait = Math.max(0, s.lastVoiceWall + this.opts.finalDelayMs - Date.now());
    const t = setTimeout(() => {
      this.timers.delete(t);
      this.pendingFinal = undefined;
      this.events.push(event);
    }, wait);
    this.timers.add(t);
    this.pendingFinal = { event, timer: t };
  }
}

/** The share of an utterance's words a partial at `upToMs` has heard (at least one). */
function partialWords(text: string, upToMs: number, s: { startMs: number; lastVoiceMs: number }): string {
  const all = text.split(' ');
  const heard = Math.max(
    1,
    Math.ceil((all.length * (upToMs - s.startMs)) / Math.max(1, s.lastVoiceMs - s.startMs + 300)),
  );
  return all.slice(0, Math.min(all.length, heard)).join(' ');
}

const TimedEnv = z.object({
  TIMED_STT_FINAL_MS: z.coerce.number().nonnegative().default(TIMED_STT_DEFAULTS.finalDelayMs),
  TIMED_STT_PARTIAL_MS: z.coerce.number().positive().default(TIMED_STT_DEFAULTS.partialEveryMs),
  TIMED_STT_MIN_SPEECH_MS: z.coerce.number().nonnegative().default(TIMED_STT_DEFAULTS.minSpeechMs),
  TIMED_STT_END_SILENCE_MS: z.coerce.number().positive().default(TIMED_STT_DEFAULTS.endSilenceMs),
  TIMED_STT_TEXTS: z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (!raw) return [...TIMED_STT_DEFAULTS.texts];
      try {
        return z.array(z.string().min(1)).min(1).parse(JSON.parse(raw));
      } catch {
        ctx.addIssue({ code: 'custom', message: 'TIMED_STT_TEXTS must be a JSON array of strings' });
        return z.NEVER;
      }
    }),
});

/**
 * `TIMED_STT_FINAL_MS`, `TIMED_STT_PARTIAL_MS`, `TIMED_STT_MIN_SPEECH_MS`, `TIMED_STT_END_SILENCE_MS`,
 * `TIMED_STT_TEXTS` (JSON array).
 */
export function timedSttFromEnv(env: NodeJS.ProcessEnv): TimedSTT {
  const parsed = TimedEnv.safeParse(env);
  if (!parsed.success)
    throw new Error(`invalid timed STT config: ${parsed.error.issues.map((i) => i.message).join('; ')}`);
  return new TimedSTT({
    finalDelayMs: parsed.data.TIMED_STT_FINAL_MS,
    partialEveryMs: parsed.data.TIMED_STT_PARTIAL_MS,
    minSpeechMs: parsed.data.TIMED_STT_MIN_SPEECH_MS,
    endSilenceMs: parsed.data.TIMED_STT_END_SILENCE_MS,
    texts: parsed.data.TIMED_STT_TEXTS,
  });
}
