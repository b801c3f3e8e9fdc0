import { setTimeout as sleepFor } from 'node:timers/promises';
import { AsyncQueue } from '@va/stream';
import { StreamResampler } from '@va/audio';
import type { AudioFrame, AudioSource, ResponderSource, SampleRate, SpeechDone } from '@va/protocol';
import type { SpeechChunk, TTS } from '@va/providers';
import { ATTR, METRIC, recordError, recordLatency, SPAN, startStageSpan, type Context, type Span } from '@va/telemetry';

export const STAGE = 'tts';
/** How long an opener already being synthesized may still take when the answer's audio is ready first. */
const OPENER_GRACE_MS = 150;

/** Waits `ms`; false if the signal fired first. */
async function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  try {
    await sleepFor(Math.max(0, ms), undefined, { signal });
    return true;
  } catch {
    return false;
  }
}

/** What a turn's speech does to the world: the actor sends it on the bus, a test records it. */
export interface SpeakerOutput {
  readonly sessionId: string;
  /** The session's output sample rate. */
  readonly sampleRate: SampleRate;
  audio(frame: AudioFrame, context: Context): void;
  speech(done: SpeechDone, context: Context): void;
  /** Synthesis failed mid-turn (logged, an `error` event). */
  failed(turnId: string, err: unknown): void;
  /** A filler was spoken (counted, logged), or could not be synthesized. */
  filler(turnId: string, text: string, err?: unknown): void;
  /** The audio sent of a turn (in `context`'s trace) now reaches further into its text: kept for a successor. */
  progress?(turnId: string, sent: SpeechProgress, context: Context): void;
}

/** How far a turn's audio has gone out: into each source's text, and the frame sequence and clock. */
export interface SpeechProgress {
  sentTo: Record<ResponderSource, number>;
  seq: number;
  audioMs: number;
}

/** What the session knows that a turn's filler depends on. */
export interface FillerSource {
  /** Any fillers at all (without them a turn does not wait to see whether its answer is late). */
  readonly enabled: boolean;
  /** The next filler to say and its audio; undefined when fillers are off or the user should not be talked over. */
  next(turnId: string): { text: string; audio: Promise<SpeechChunk[]> } | undefined;
  /** Still fine to speak over this turn (nobody talking, not paused by a barge-in). */
  mayInterject(turnId: string): boolean;
}

/** One responder's text stream within a turn, and what has been made of it. */
class SourceText {
  readonly text = new AsyncQueue<string>();
  received = '';
  /** Text before this was spoken by a predecessor (a takeover mid-turn): not synthesized again. */
  base = 0;
  nextSeq = 0;
  firstTextAt: number | undefined;
  span: Span | undefined;
}

/**
 * Where a turn's speech is: the opener playing (`opener`), waiting for the answer's first audio (`waiting`),
 * a filler because the answer is late (`filler`), the answer playing (`answer`), over (`done`).
 */
export type SpeechPhase = 'opener' | 'waiting' | 'filler' | 'answer' | 'done';

/**
 * One turn's voice: synthesizes the opener (fast) and the answer (deep) at the same time, sends the opener's
 * audio first, then the answer's — never overlapping. If the answer's first audio is ready before the opener's,
 * the opener is skipped. If the answer is late beyond `fillerAfterMs` of silence, one short filler is spoken.
 * Audio goes out as fast as it is made; the gateway paces playout.
 */
export class TurnSpeaker {
  phase: SpeechPhase = 'opener';
  readonly fast = new SourceText();
  readonly deep = new SourceText();
  private commit!: (at: number) => void;
  /** When the turn was committed (`turn end`): a preview's audio is held by the gateway until then. */
  private readonly committed = new Promise<number>((resolve) => (this.commit = resolve));
  private seq = 0;
  private audioMs = 0;
  /** How far into each source's text the audio sent so far reaches: the next frame carries the text past it. */
  private readonly sentTo: Record<AudioSource, number> = { fast: 0, filler: 0, deep: 0 };
  private firstSentAt: number | undefined;
  private readonly deepAudio = new AsyncQueue<SpeechChunk>();
  private deepReady!: () => void;
  private readonly deepFirst = new Promise<'deep'>((resolve) => (this.deepReady = () => resolve('deep')));

  constructor(
    readonly turnId: string,
    readonly context: Context,
    readonly signal: AbortSignal,
    private readonly tts: TTS,
    private readonly out: SpeakerOutput,
    private readonly fillers: FillerSource,
    private readonly fillerAfterMs: number,
    /** The voice of the session's agent when the turn began (undefined: the adapter's own). */
    private readonly voice?: string,
  ) {}

  private get speakOptions(): { voice: string } | undefined {
    return this.voice ? { voice: this.voice } : undefined;
  }

  committedAt(at: number): void {
    this.commit(at);
  }

  /**
   * Taken over mid-turn: the predecessor's audio reached `sent` (a sentence boundary of each source's text, the
   * frame sequence and clock). Only the text past it is synthesized; frames go on from its sequence.
   */
  resumeAfter(sent: SpeechProgress): void {
    for (const source of ['fast', 'deep'] as const) {
      this[source].base = sent.sentTo[source];
      this.sentTo[source] = sent.sentTo[source];
    }
    this.seq = sent.seq;
    this.audioMs = sent.audioMs;
  }

  /** A delta of `source`'s text (already bounded); `end` when that source is done. */
  text(source: ResponderSource, delta: string, end: boolean): void {
    const s = this[source];
    if (delta) {
      s.firstTextAt ??= performance.now();
      s.span ??= startStageSpan(SPAN.ttsSynthesize, {
        parent: this.context,
        sessionId: this.out.sessionId,
        turnId: this.turnId,
        stage: STAGE,
        attributes: { [ATTR.provider]: this.tts.provider, [ATTR.source]: source },
      });
      const before = s.received.length;
      s.received += delta;
      // Past what a predecessor already spoke, if anything.
      const fresh = delta.slice(Math.max(0, s.base - before));
      if (fresh) s.text.push(fresh);
    }
    if (end) s.text.end();
  }

  /** No more text for this turn (superseded, cancelled, stopped). */
  close(): void {
    this.fast.text.end();
    this.deep.text.end();
  }

  /** Speaks the turn: opener, filler if the answer is late, answer. Resolves when it is all sent or cancelled. */
  async run(): Promise<void> {
    const resamplers = await Promise.all([
      StreamResampler.create(this.tts.sampleRate, this.out.sampleRate),
      StreamResampler.create(this.tts.sampleRate, this.out.sampleRate),
    ]);
    // The opener gets its own abort so it can be skipped without touching the answer.
    const skipOpener = new AbortController();
    const opener = this.tts.synthesize(
      this.fast.text,
      AbortSignal.any([this.signal, skipOpener.signal]),
      this.speakOptions,
    );
    const deepPump = this.pumpAnswer();
    try {
      await this.speakOpener(opener, skipOpener, resamplers[0]!);
      if (this.deepAudio.size === 0 && !this.deepAudio.closed) await this.fillIfLate();
      await this.speakAnswer(resamplers[1]!);
    } catch (err) {
      if (!this.signal.aborted) {
        for (const s of [this.fast, this.deep]) if (s.span) recordError(s.span, err);
        this.out.failed(this.turnId, err);
        this.done('fast', 0, false);
        this.done('deep', 0, false);
      }
    } finally {
      this.phase = 'done';
      await deepPump;
      for (const s of [this.fast, this.deep]) if (s.span?.isRecording()) s.span.end();
      for (const r of resamplers) r.destroy();
    }
  }

  /** The answer is synthesized from its first delta on, whatever the opener is doing. */
  private async pumpAnswer(): Promise<void> {
    try {
      for await (const c of this.tts.synthesize(this.deep.text, this.signal, this.speakOptions)) {
        this.deepAudio.push(c);
        this.deepReady();
      }
      this.deepAudio.end();
    } catch (err) {
      this.deepAudio.fail(err);
    } finally {
      this.deepReady();
    }
  }

  /** Opener first — unless the answer's audio is ready before the opener has any. */
  private async speakOpener(
    fastAudio: AsyncIterable<SpeechChunk>,
    skip: AbortController,
    resampler: StreamResampler,
  ): Promise<void> {
    const fastIt = fastAudio[Symbol.asyncIterator]();
    const firstFast = fastIt.next();
    let winner = await Promise.race([firstFast.then(() => 'fast' as const), this.deepFirst]);
    // An opener whose text is already being synthesized gets a moment to win the race by a hair.
    if (winner === 'deep' && this.fast.received !== '') {
      winner = await Promise.race([
        firstFast.then(() => 'fast' as const),
        pause(OPENER_GRACE_MS, this.signal).then(() => 'deep' as const),
      ]);
    }
    if (winner === 'deep' && this.deepAudio.size > 0) {
      skip.abort(new Error('opener skipped: answer ready first'));
      void firstFast.catch(() => undefined);
      await fastIt.return?.();
      this.done('fast', 0, true);
      return;
    }
    let frames = 0;
    let r = await firstFast;
    if (!r.done) this.measureFirstAudio('fast', r.value);
    while (!r.done) {
      this.send('fast', r.value, resampler, this.fast.received);
      frames++;
      r = await fastIt.next();
    }
    this.done('fast', frames, false);
  }

  private async speakAnswer(resampler: StreamResampler): Promise<void> {
    this.phase = 'answer';
    let frames = 0;
    for await (const c of this.deepAudio) {
      if (frames === 0) this.measureFirstAudio('deep', c);
      this.send('deep', c, resampler, this.deep.received);
      frames++;
    }
    this.done('deep', frames, false);
  }

  /**
   * Waits for the answer's first audio; if the silence after what was sent (the opener, played from the commit
   * on) would exceed `fillerAfterMs`, speaks one filler first — unless the user is speaking.
   */
  private async fillIfLate(): Promise<void> {
    this.phase = 'waiting';
    if (!this.fillers.enabled) return;
    const committedAt = await Promise.race([this.committed, this.deepFirst.then(() => undefined)]);
    if (committedAt === undefined || this.answerStarted()) return;
    const playEnd = Math.max(committedAt, this.firstSentAt ?? committedAt) + this.audioMs;
    const late = await Promise.race([
      this.deepFirst.then(() => false),
      pause(playEnd + this.fillerAfterMs - performance.now(), this.signal),
    ]);
    if (!late || this.answerStarted()) return;
    const filler = this.fillers.mayInterject(this.turnId) ? this.fillers.next(this.turnId) : undefined;
    if (!filler) return;
    this.phase = 'filler';
    let chunks: SpeechChunk[];
    try {
      chunks = await filler.audio;
    } catch (err) {
      this.out.filler(this.turnId, filler.text, err);
      return;
    }
    if (this.signal.aborted || !this.fillers.mayInterject(this.turnId)) return;
    const resampler = await StreamResampler.create(this.tts.sampleRate, this.out.sampleRate);
    try {
      for (const c of chunks) this.send('filler', c, resampler, filler.text);
    } finally {
      resampler.destroy();
    }
    this.out.filler(this.turnId, filler.text);
    this.out.speech(
      { turnId: this.turnId, source: 'filler', text: filler.text, frames: chunks.length, skipped: false },
      this.context,
    );
  }

  private answerStarted(): boolean {
    return this.deepAudio.size > 0 || this.deepAudio.closed || this.signal.aborted;
  }

  /** Sends one chunk's audio with the words it brings in (`text`: the source's text its offsets count in). */
  private send(source: AudioSource, chunk: SpeechChunk, resampler: StreamResampler, text: string): void {
    if (this.signal.aborted) return;
    const samples = resampler.push(chunk.samples);
    if (samples.length === 0) return;
    this.firstSentAt ??= performance.now();
    const { sampleRate } = this.out;
    const from = this.sentTo[source];
    // A resumed source's synthesizer counts from where the predecessor stopped.
    const textOffset = (source === 'filler' ? 0 : this[source].base) + chunk.textOffset;
    this.sentTo[source] = Math.max(from, textOffset);
    this.out.audio(
      {
        samples,
        sampleRate,
        seq: this.seq++,
        tsMs: this.audioMs,
        turnId: this.turnId,
        source,
        textOffset,
        text: text.slice(from, textOffset),
      },
      this.context,
    );
    this.audioMs += (samples.length * 1000) / sampleRate;
    if (source !== 'filler' && this.sentTo[source] > from) {
      this.out.progress?.(
        this.turnId,
        { sentTo: { fast: this.sentTo.fast, deep: this.sentTo.deep }, seq: this.seq, audioMs: this.audioMs },
        this.context,
      );
    }
  }

  private done(source: ResponderSource, frames: number, skipped: boolean): void {
    const s = this[source];
    if (s.span) {
      s.span.setAttribute(ATTR.frames, frames);
      s.span.setAttribute(ATTR.skipped, skipped);
      s.span.setAttribute(ATTR.interrupted, this.signal.aborted);
      s.span.end();
    }
    if (this.signal.aborted) return;
    this.out.speech({ turnId: this.turnId, source, text: s.received, frames, skipped }, this.context);
  }

  private measureFirstAudio(source: ResponderSource, chunk: SpeechChunk): void {
    const s = this[source];
    if (chunk.servedBy) {
      s.span?.setAttributes({ [ATTR.provider]: chunk.servedBy.provider, [ATTR.fallback]: chunk.servedBy.fallback });
    }
    if (s.firstTextAt === undefined) return;
    const ttfb = performance.now() - s.firstTextAt;
    s.span?.setAttribute(ATTR.ttfbMs, Math.round(ttfb * 10) / 10);
    recordLatency(METRIC.ttfb, ttfb, { span: s.span, attributes: { [ATTR.stage]: STAGE, source } });
  }
}
