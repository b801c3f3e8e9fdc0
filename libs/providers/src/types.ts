import type { Pcm } from '@va/audio';
import type { ChatMessage } from '@va/protocol';

/**
 * Provider interfaces (DESIGN.md §7). Every stage is a stream transformer: AsyncIterable in, AsyncIterable out,
 * an AbortSignal that stops it and releases what it holds. Cloud, local and fake adapters implement the same
 * interface and pass the same conformance suite.
 */

/** A piece of audio on the stage's clock. */
export interface AudioChunk extends Pcm {
  /** Start of this chunk on the session's audio clock, ms (STT input). */
  tsMs?: number;
}

export interface TranscriptEvent {
  text: string;
  final: boolean;
  /** A partial whose words will not change any more. */
  stable: boolean;
  confidence: number;
  /** Audio-clock span of the words, ms. */
  startMs: number;
  endMs: number;
}

export interface STT {
  readonly provider: string;
  /** The rate the adapter wants; callers resample to it. */
  readonly sampleRate: number;
  /**
   * Transcribes a live stream: partials while the user speaks, a final per utterance. Ends when the input
   * ends (after the last final) or the signal fires.
   */
  transcribe(audio: AsyncIterable<AudioChunk>, signal: AbortSignal): AsyncIterable<TranscriptEvent>;
}

export interface LLMOptions {
  temperature?: number;
  maxTokens?: number;
}

export interface LLM {
  readonly provider: string;
  readonly model: string;
  /** Streams the reply's text deltas. Throws on provider failure; stops on abort. */
  chat(messages: readonly ChatMessage[], opts: LLMOptions, signal: AbortSignal): AsyncIterable<string>;
}

/** Synthesized audio, with how much of the input text it covers (for "what was really spoken"). */
export interface SpeechChunk extends Pcm {
  /** Characters of the input text (all deltas concatenated) spoken once this chunk has played. */
  textOffset: number;
}

export interface TTS {
  readonly provider: string;
  readonly sampleRate: number;
  /**
   * Speaks streamed text: synthesis starts at the first complete sentence or clause so first audio comes
   * early. Ends after the input ends and everything is spoken, or when the signal fires.
   */
  synthesize(text: AsyncIterable<string>, signal: AbortSignal): AsyncIterable<SpeechChunk>;
}

export interface VAD {
  readonly provider: string;
  readonly sampleRate: number;
  /** Samples per call of `speechProbability` (Silero v5: 512 at 16 kHz). */
  readonly frameSamples: number;
  /** Probability (0..1) that this frame holds speech. Keeps state across calls (one instance per stream). */
  speechProbability(frame: Int16Array): Promise<number>;
  reset(): void;
  close(): Promise<void>;
}

export type ProviderKind = 'stt' | 'llm' | 'tts' | 'vad';
