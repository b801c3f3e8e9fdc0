import type { SpeechTail } from './eou/prosody.js';
import type { Pcm } from '@va/audio';
import type { ChatMessage, ToolCall } from '@va/protocol';
import type { FailoverReason } from './failover.js';

/**
 * Provider interfaces. Every stage is a stream transformer: AsyncIterable in, AsyncIterable out,
 * an AbortSignal that stops it and releases what it holds. Cloud, local and fake adapters implement the same
 * interface and pass the same conformance suite.
 */

/** A piece of audio on the stage's clock. */
export interface AudioChunk extends Pcm {
  /** Start of this chunk on the session's audio clock, ms (STT input). */
  tsMs?: number;
}

/** Set by a fallback chain on what it yields: which provider made it, and whether that was not the first choice. */
export interface ServedFrom {
  servedBy?: { provider: string; fallback: boolean };
}

export interface TranscriptEvent extends ServedFrom {
  text: string;
  final: boolean;
  /** A partial whose words will not change any more. */
  stable: boolean;
  confidence: number;
  /** Audio-clock span of the words, ms. */
  startMs: number;
  endMs: number;
}

/**
 * Opens what the next call will use (a WebSocket, a TLS connection in a keep-alive agent) so the first turn does
 * not pay for it. Called when a session opens; cheap and safe to call again; never throws (a failed prewarm
 * just leaves the first call to connect itself).
 */
export interface Prewarmable {
  prewarm?(): Promise<void>;
}

export interface STT extends Prewarmable {
  readonly provider: string;
  /** The rate the adapter wants; callers resample to it. */
  readonly sampleRate: number;
  /**
   * Transcribes a live stream: partials while the user speaks, a final per utterance. Ends when the input
   * ends (after the last final) or the signal fires.
   */
  transcribe(audio: AsyncIterable<AudioChunk>, signal: AbortSignal): AsyncIterable<TranscriptEvent>;
}

/** A tool the model may call (OpenAI tools format); `parameters` is a JSON Schema object. */
export interface ToolSpec {
  name: string;
  description: string;
  parameters: Record<string, unknown>;
}

export interface LLMOptions {
  temperature?: number;
  maxTokens?: number;
  /** Tools offered to the model; it may answer with `tool-calls` instead of (or after) text. */
  tools?: readonly ToolSpec[];
  /**
   * Groups requests that share a prompt prefix so the provider's prompt cache hits (OpenAI `prompt_cache_key`).
   * Adapters whose provider has no such field ignore it.
   */
  promptCacheKey?: string;
  /**
   * The model this request asks for (a session's agent names its own), instead of the adapter's. A fallback chain
   * asks it of its first provider only: the others keep the models they were configured with.
   */
  model?: string;
}

export interface LLMUsage {
  promptTokens: number;
  completionTokens: number;
  /** Prompt tokens served from the provider's prompt cache, when it says. */
  cachedTokens?: number;
}

/**
 * What a chat stream yields: text as it is generated; the tool calls the model made (once, complete, when the
 * model has finished writing them); the token usage (once, at the end, when the provider reports it).
 */
export type LLMEvent =
  | { type: 'text'; text: string }
  | { type: 'tool-calls'; calls: ToolCall[] }
  | { type: 'usage'; usage: LLMUsage }
  | ServedBy;

/**
 * Which provider answered, when that was decided among several (a fallback chain): sent once, before the first
 * text or tool calls, with the providers given up on first (for spans and metrics).
 */
export interface ServedBy {
  type: 'served-by';
  provider: string;
  model: string;
  /** Not the first choice: an earlier provider failed, stalled, or was set aside as unhealthy. */
  fallback: boolean;
  failovers: { provider: string; reason: FailoverReason; message?: string }[];
}

export interface LLM extends Prewarmable {
  readonly provider: string;
  readonly model: string;
  /** Streams the reply. Throws on provider failure; ends quietly on abort. Text events are never empty. */
  chat(messages: readonly ChatMessage[], opts: LLMOptions, signal: AbortSignal): AsyncIterable<LLMEvent>;
}

/** Only the text of a chat stream. */
export async function* textOf(events: AsyncIterable<LLMEvent>): AsyncIterable<string> {
  for await (const event of events) if (event.type === 'text') yield event.text;
}

/** Synthesized audio, with how much of the input text it covers (for "what was really spoken"). */
export interface SpeechChunk extends Pcm, ServedFrom {
  /** Characters of the input text (all deltas concatenated) spoken once this chunk has played. */
  textOffset: number;
}

/** How one synthesis should sound. */
export interface SpeakOptions {
  /**
   * The voice (a session's agent names its own) instead of the adapter's: a flite voice (`kal`, `awb`, `rms`,
   * `slt`), an OpenAI voice (`alloy`, `nova`…), an ElevenLabs voice id. A fallback chain asks it of its first
   * provider only: the others keep their own.
   */
  voice?: string;
}

export interface TTS extends Prewarmable {
  readonly provider: string;
  readonly sampleRate: number;
  /**
   * Speaks streamed text: synthesis starts at the first complete sentence or clause so first audio comes
   * early. Ends after the input ends and everything is spoken, or when the signal fires.
   */
  synthesize(text: AsyncIterable<string>, signal: AbortSignal, opts?: SpeakOptions): AsyncIterable<SpeechChunk>;
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

/** An end-of-utterance score at or above this: the words sound finished (the turn detector previews them). */
export const SOUNDS_FINISHED = 0.5;

/**
 * Scores how finished an utterance sounds (0..1) from its words — and, for a model that listens, from how they
 * were said: how long the turn detector waits in a pause before ending the user's turn, and whether it starts the
 * responders early (a preview). Synchronous and cheap: it runs on every frame of a pause, on partial words too.
 */
export interface EndOfUtteranceModel {
  readonly provider: string;
  /** Shown on the `turn.detect` span (`va.eou_model`). */
  readonly name: string;
  /**
   * `speech`: the audio right before the pause (one object per pause, so a model may keep what it read of it);
   * absent, the model judges the words alone.
   */
  score(text: string, speech?: SpeechTail): number;
}

export type ProviderKind = 'stt' | 'llm' | 'tts' | 'vad' | 'eou';
