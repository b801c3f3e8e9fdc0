import type { TranscriptEvent } from '../types.js';
import { DECODER_FRAME_MS, VAD_END_FRAMES, VAD_START_FRAMES, type Decoder } from './pocketsphinx.js';
import { DECODER_SAMPLE_RATE } from './worker-protocol.js';

/** How often (audio time) a partial hypothesis is taken while in speech. */
export const PARTIAL_EVERY_MS = 100;
/** Partials carry this: pocketsphinx computes word posteriors only when an utterance ends. */
export const PARTIAL_CONFIDENCE = 0.5;
/**
 * Audio is fed in pieces of at most this many samples (20 ms) whatever the caller's chunking, so the VAD's
 * utterance edges are seen (and timed) to within 20 ms, and one big chunk cannot hide a whole utterance.
 */
const PIECE = DECODER_SAMPLE_RATE / 50;

type DecoderApi = Pick<Decoder, 'startUtterance' | 'endUtterance' | 'process' | 'hypothesis' | 'wordConfidence'>;

/**
 * One transcription stream on a loaded decoder: turns pocketsphinx's VAD edges and hypotheses into
 * TranscriptEvents on the caller's audio clock.
 *
 * - Utterances: a final when pocketsphinx's own VAD closes an utterance that has words, or when the input ends.
 *   An utterance without words is never ended (not at a VAD close on noise, nor when a silent stream ends):
 *   ending it would update the cepstral mean from noise alone, and the next real utterance then decodes badly
 *   (measured on a fresh decoder: "the weather is nice today" → "why"). It stays open for what comes next.
 * - Partials every PARTIAL_EVERY_MS of speech, sent when their text changes. `stable` is a heuristic: the text
 *   equals the previous two partial hypotheses (≥ 200 ms unchanged); pocketsphinx itself can still revise it, so
 *   a stable partial is sent once more when it becomes stable.
 * - Times: the VAD reports speech VAD_START_FRAMES after it starts and its end VAD_END_FRAMES after it ends, so
 *   the edges are moved back by those amounts; clamped into the audio actually received.
 */
export class StreamRecognizer {
  private clockMs: number | undefined;
  private uttStartMs = 0;
  private inSpeech = false;
  private speechStartMs: number | undefined;
  private sincePartialMs = 0;
  private recentHyps: string[] = [];
  private lastPartial: { text: string; stable: boolean } | undefined;
  private active = true;

  /** `decoder` has an utterance open (see pocketsphinx-worker.ts) and gets one open again when this stream ends. */
  constructor(
    private readonly decoder: DecoderApi,
    private readonly emit: (event: TranscriptEvent) => void,
  ) {}

  /** 16 kHz samples spanning [startMs, endMs) of the audio clock. */
  push(samples: Int16Array, startMs: number, endMs: number): void {
    if (this.clockMs === undefined) this.uttStartMs = startMs;
    const msPerSample = samples.length > 0 ? (endMs - startMs) / samples.length : 0;
    for (let at = 0; at < samples.length; at += PIECE) {
      const piece = samples.subarray(at, at + PIECE);
      const wasInSpeech = this.inSpeech;
      this.inSpeech = this.decoder.process(piece);
      this.clockMs = startMs + (at + piece.length) * msPerSample;
      if (!wasInSpeech && this.inSpeech) this.speechStarted();
      else if (wasInSpeech && !this.inSpeech) this.speechEnded();
      else if (this.inSpeech) this.maybePartial(piece.length * msPerSample);
    }
  }

  /** Input ended: the open utterance becomes a final if it has words. */
  finish(): void {
    if (!this.active) return;
    this.active = false;
    if (!this.heardSpeech) return; // nothing to finish: the utterance stays open for the next stream
    this.decoder.endUtterance();
    this.final(this.speechStartMs ?? this.uttStartMs, this.clockMs ?? this.uttStartMs);
    this.decoder.startUtterance();
  }

  /** Stop without emitting anything more. */
  abort(): void {
    if (!this.active) return;
    this.active = false;
    if (!this.heardSpeech) return;
    this.decoder.endUtterance();
    this.decoder.startUtterance();
  }

  /** Whether the open utterance may hold words. One without is never ended (see the class comment). */
  private get heardSpeech(): boolean {
    return this.inSpeech || this.speechStartMs !== undefined;
  }

  private speechStarted(): void {
    const clock = this.clockMs!;
    this.speechStartMs = Math.max(this.uttStartMs, clock - VAD_START_FRAMES * DECODER_FRAME_MS);
    this.sincePartialMs = 0;
  }

  private speechEnded(): void {
    if (this.decoder.hypothesis() === '') {
      // Noise, not an utterance: keep decoding in the same utterance.
      this.speechStartMs = undefined;
      this.resetPartials();
      return;
    }
    const clock = this.clockMs!;
    const startMs = this.speechStartMs ?? this.uttStartMs;
    this.decoder.endUtterance();
    this.final(startMs, Math.max(startMs, clock - VAD_END_FRAMES * DECODER_FRAME_MS));
    this.decoder.startUtterance();
    this.uttStartMs = clock;
    this.speechStartMs = undefined;
  }

  private maybePartial(ms: number): void {
    this.sincePartialMs += ms;
    if (this.sincePartialMs < PARTIAL_EVERY_MS) return;
    this.sincePartialMs = 0;
    const text = this.decoder.hypothesis();
    const stable = text !== '' && this.recentHyps.length === 2 && this.recentHyps.every((h) => h === text);
    this.recentHyps = [...this.recentHyps, text].slice(-2);
    if (text === '') return;
    if (this.lastPartial?.text === text && this.lastPartial.stable === stable) return;
    this.lastPartial = { text, stable };
    const startMs = this.speechStartMs ?? this.uttStartMs;
    this.emit({ text, final: false, stable, confidence: PARTIAL_CONFIDENCE, startMs, endMs: this.clockMs! });
  }

  /** Call after endUtterance(): emits the hypothesis as a final if it has words. */
  private final(startMs: number, endMs: number): void {
    this.resetPartials();
    const text = this.decoder.hypothesis();
    if (text === '') return;
    const confidence = this.decoder.wordConfidence() ?? PARTIAL_CONFIDENCE;
    this.emit({ text, final: true, stable: true, confidence, startMs, endMs: Math.max(startMs, endMs) });
  }

  private resetPartials(): void {
    this.recentHyps = [];
    this.lastPartial = undefined;
    this.sincePartialMs = 0;
  }
}
