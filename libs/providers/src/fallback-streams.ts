import { StreamResampler } from '@va/audio';
import { ProviderError } from './errors.js';
import { attemptSignal, errorMessage, firstOutput, type FailoverEvent } from './failover.js';
import { ProviderHealth } from './health.js';
import type { AudioChunk, SpeakOptions, SpeechChunk, STT, TranscriptEvent, TTS } from './types.js';

export interface FallbackTtsOptions {
  /** An attempt whose first audio takes longer (from the first text it was given) is abandoned. */
  ttfbTimeoutMs: number;
  /** A failed provider is tried after the others for this long. Default 30 s. */
  unhealthyMs?: number;
  onFailover?: (event: FailoverEvent) => void;
}

/**
 * Text that several attempts may read, each from the start: the source is read once, what it gave is kept for
 * the next attempt (a failover mid-sentence re-sends the sentence to the next provider).
 */
class ReplayableText {
  readonly #parts: string[] = [];
  #done = false;
  #error: unknown;
  #wake: (() => void) | undefined;
  #started = false;

  constructor(private readonly source: AsyncIterable<string>) {}

  /** When the first text arrived (performance.now), for the first-byte budget. */
  firstAt: number | undefined;

  async *reader(signal: AbortSignal): AsyncIterable<string> {
    if (!this.#started) {
      this.#started = true;
      // Read once, by whichever attempt comes first; the pump never throws (it keeps the error for readers).
      void this.#pump();
    }
    for (let i = 0; ; i++) {
      while (i >= this.#parts.length && !this.#done && !signal.aborted) {
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
          signal.addEventListener('abort', () => resolve(), { once: true });
        });
      }
      if (signal.aborted) return;
      if (i < this.#parts.length) yield this.#parts[i]!;
      else if (this.#error !== undefined) throw this.#error;
      else return;
    }
  }

  async #pump(): Promise<void> {
    try {
      for await (const part of this.source) {
        this.firstAt ??= performance.now();
        this.#parts.push(part);
        this.#wake?.();
      }
    } catch (err) {
      this.#error = err;
    } finally {
      this.#done = true;
      this.#wake?.();
    }
  }
}

/**
 * Tries TTS providers in order: fails over on an error before the first audio, or on first audio later than
 * `ttfbTimeoutMs` after the text started; the next provider gets the text from the beginning. Once audio has
 * been yielded the turn is committed to that provider (switching voices mid-answer is worse than an error).
 * Audio is resampled to the first provider's rate, so the chain has one `sampleRate`.
 */
export class FallbackTTS implements TTS {
  readonly provider = 'fallback';
  readonly sampleRate: number;
  readonly health: ProviderHealth;

  constructor(
    private readonly ttses: readonly TTS[],
    private readonly opts: FallbackTtsOptions,
  ) {
    if (ttses.length === 0) throw new Error('FallbackTTS needs at least one TTS');
    this.sampleRate = ttses[0]!.sampleRate;
    this.health = new ProviderHealth(ttses.length, opts.unhealthyMs ?? 30_000);
  }

  async prewarm(): Promise<void> {
    await Promise.all(this.ttses.map((t) => t.prewarm?.()));
  }

  async *synthesize(text: AsyncIterable<string>, signal: AbortSignal, opts?: SpeakOptions): AsyncIterable<SpeechChunk> {
    const replay = new ReplayableText(text);
    const errors: string[] = [];
    const order = this.health.order();
    for (const [attemptNo, index] of order.entries()) {
      if (signal.aborted) return;
      const tts = this.ttses[index]!;
      const attempt = attemptSignal(signal);
      // An agent's voice is its stage's configured provider's to give; a fallback speaks with its own.
      const asked = index === 0 ? opts : undefined;
      const it = tts.synthesize(replay.reader(attempt.signal), attempt.signal, asked)[Symbol.asyncIterator]();
      const resampler = await StreamResampler.create(tts.sampleRate, this.sampleRate);
      try {
        const isLast = attemptNo === order.length - 1;
        const timeoutMs = isLast ? Infinity : this.opts.ttfbTimeoutMs;
        // The budget runs from the first text: a TTS has nothing to say before it.
        const first = await firstOutput(it, { timeoutMs, startedAt: () => replay.firstAt });
        if (first.kind === 'done') return;
        if (first.kind === 'value') {
          this.health.markServed(index);
          const servedBy = { provider: tts.provider, fallback: index !== 0 };
          const out = (c: SpeechChunk): SpeechChunk => ({
            ...c,
            samples: resampler.push(c.samples),
            sampleRate: this.sampleRate,
            servedBy,
          });
          yield out(first.value);
          for (let next = await it.next(); !next.done; next = await it.next()) yield out(next.value);
          return;
        }
        if (signal.aborted) return;
        errors.push(
          `${tts.provider}: ${first.kind === 'error' ? errorMessage(first.error) : `no audio within ${timeoutMs} ms`}`,
        );
        this.health.markFailed(index);
        this.opts.onFailover?.({
          provider: tts.provider,
          reason: first.kind,
          ...(first.kind === 'error' ? { error: first.error } : {}),
        });
      } finally {
        attempt.end();
        void Promise.resolve(it.return?.()).catch(() => undefined);
        resampler.destroy();
      }
    }
    throw new ProviderError('fallback', 'server', `every TTS failed before its first audio: ${errors.join('; ')}`);
  }
}

export interface FallbackSttOptions {
  /** A failed provider is tried after the others for this long. Default 30 s. */
  unhealthyMs?: number;
  /** Audio kept to replay to the next provider after a failure, so the words being spoken are not lost. Default 5 s. */
  replayMs?: number;
  onFailover?: (event: FailoverEvent) => void;
}

/**
 * Tries STT providers in order for one live stream. A provider that fails (to connect, or mid-stream) is set
 * aside and the stream goes on with the next one, which first hears the last `replayMs` of audio again (on the
 * same clock), so an utterance in progress is not lost. Transcripts say which provider made them.
 */
export class FallbackSTT implements STT {
  readonly provider = 'fallback';
  readonly sampleRate: number;
  readonly health: ProviderHealth;

  constructor(
    private readonly stts: readonly STT[],
    private readonly opts: FallbackSttOptions = {},
  ) {
    if (stts.length === 0) throw new Error('FallbackSTT needs at least one STT');
    this.sampleRate = stts[0]!.sampleRate;
    this.health = new ProviderHealth(stts.length, opts.unhealthyMs ?? 30_000);
  }

  async prewarm(): Promise<void> {
    await Promise.all(this.stts.map((s) => s.prewarm?.()));
  }

  async *transcribe(audio: AsyncIterable<AudioChunk>, signal: AbortSignal): AsyncIterable<TranscriptEvent> {
    const replayMs = this.opts.replayMs ?? 5_000;
    const recent: AudioChunk[] = [];
    const source = audio[Symbol.asyncIterator]();
    let sourceDone = false;
    /** The input itself failed (the microphone, not a provider): rethrown as is, no failover. */
    let inputFailure: { error: unknown } | undefined;
    const errors: string[] = [];
    // One pass over the preference order; each provider runs until it fails or the stream ends.
    for (const index of this.health.order()) {
      if (signal.aborted || sourceDone) return;
      const stt = this.stts[index]!;
      const attempt = attemptSignal(signal);
      const replay = [...recent];
      const input = async function* (): AsyncIterable<AudioChunk> {
        yield* replay;
        for (;;) {
          const next = await source.next().catch((error: unknown) => {
            inputFailure = { error };
            throw error;
          });
          if (next.done) {
            sourceDone = true;
            return;
          }
          recent.push(next.value);
          const horizon = (next.value.tsMs ?? 0) - replayMs;
          while (recent.length > 1 && (recent[0]!.tsMs ?? 0) < horizon) recent.shift();
          yield next.value;
        }
      };
      const servedBy = { provider: stt.provider, fallback: index !== 0 };
      try {
        for await (const event of stt.transcribe(input(), attempt.signal)) yield { ...event, servedBy };
        this.health.markServed(index);
        return;
      } catch (err) {
        if (signal.aborted) return;
        if (inputFailure) throw inputFailure.error;
        errors.push(`${stt.provider}: ${errorMessage(err)}`);
        this.health.markFailed(index);
        this.opts.onFailover?.({ provider: stt.provider, reason: 'error', error: err });
      } finally {
        attempt.end();
      }
    }
    if (!signal.aborted && !sourceDone) {
      throw new ProviderError('fallback', 'server', `every STT failed: ${errors.join('; ')}`);
    }
  }
}
