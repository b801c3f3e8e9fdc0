import { z } from 'zod';
import { ElevenLabsClient, type ElevenLabs } from '@elevenlabs/elevenlabs-js';
import type { SpeakOptions, SpeechChunk, TTS } from '../types.js';
import type { SentenceSegmenterOptions } from './segmenter.js';
import { speakSegmentsStreamed } from './streamed-segments.js';
import { optionalEnv, parseProviderEnv } from '../env.js';
import { ElevenLabsErrors } from './elevenlabs-errors.js';
import { StreamInputCall } from './elevenlabs-input.js';
import { openSocket, WarmSocket, type Conn } from './elevenlabs-socket.js';
import { initMessage } from './elevenlabs-wire.js';

export const ELEVENLABS_DEFAULT_BASE_URL = 'https://api.elevenlabs.io';
/** "George", the voice of the SDK's README examples. */
export const ELEVENLABS_DEFAULT_VOICE_ID = 'JBFqnCBsd6RMkjVDRZzb';

export interface ElevenLabsTtsOptions extends SentenceSegmenterOptions {
  apiKey: string;
  /** Default {@link ELEVENLABS_DEFAULT_VOICE_ID}. */
  voiceId?: string;
  /** Default `eleven_flash_v2_5` (lowest latency). */
  model?: string;
  /** Default `https://api.elevenlabs.io` (the WebSocket goes to the same host, `wss:`). */
  baseUrl?: string;
  /** PCM rate asked of the provider (`output_format=pcm_<rate>`) and yielded. Default 16000. */
  sampleRate?: 8000 | 16000 | 22050 | 24000 | 44100 | 48000;
  /** ISO 639-1, for models that take one (flash/turbo v2.5). */
  languageCode?: string;
  /** Sent in the first message (SDK names; camelCase here, snake_case on the wire). */
  voiceSettings?: ElevenLabs.RealtimeVoiceSettings;
  /** Characters the provider buffers before generating without a flush (`generation_config`). Provider default [120,160,250,290]. */
  chunkLengthSchedule?: number[];
  /**
   * `websocket` (default): one `stream-input` WebSocket per reply, text sent as it streams in, word timings.
   * `http`: the SDK's `textToSpeech.stream`, one request per sentence (for networks that block WebSockets).
   */
  transport?: 'websocket' | 'http';
  /** WebSocket handshake limit. Default 10 s. */
  connectTimeoutMs?: number;
  /** Time allowed from a flush (or the end of input) until audio. Default 10 s. */
  firstByteTimeoutMs?: number;
  /** A prewarmed socket unused this long is closed (the provider drops idle ones at 20 s). Default 15 s. */
  prewarmIdleMs?: number;
  /** `inactivity_timeout` query parameter, seconds (provider default 20, max 180). */
  inactivityTimeoutS?: number;
  /** SDK retries (http transport) before a response starts. Default 1. */
  maxRetries?: number;
  /** Pace assumed for textOffset when the provider sends no alignment at all. Default 65 ms per character. */
  msPerCharEstimate?: number;
  /** Chunk length, ms. Default 20. */
  chunkMs?: number;
}

/**
 * ElevenLabs TTS with input streaming: the LLM's deltas go into one `stream-input` WebSocket per reply
 * (docs/provider-protocols.md §2) as they arrive, whole words at a time, with `flush: true` at each sentence end
 * (the shared segmenter finds them) so audio starts at the first sentence rather than at the provider's buffer
 * schedule; `{"text":""}` ends the input, the provider answers the rest, then `isFinal`.
 *
 * Why `ws` and not the SDK: `@elevenlabs/elevenlabs-js` 2.73 has no client for `stream-input` (only its message
 * types, used here); LiveKit's plugin does the same. The SDK client serves the `http` transport
 * (`textToSpeech.stream`, one request per sentence) and that transport's prewarm (`voices.get`).
 *
 * - textOffset from the alignment the provider sends with each audio chunk (`sync_alignment=true`): the characters
 *   whose timing ends within the audio played so far, matched back to the input (whitespace-tolerant, UTF-16
 *   offsets). Without any alignment, a pace estimate snapped down to the sentence ends flushed so far. The last
 *   chunk reports the text's length.
 * - Abort: the socket is terminated at once (the provider sees it close) and iteration ends quietly.
 * - `prewarm()` opens the next reply's WebSocket ahead; the next `synthesize` takes it; unused, it is closed after
 *   `prewarmIdleMs`.
 */
export class ElevenLabsTTS implements TTS {
  readonly provider = 'elevenlabs';
  readonly sampleRate: number;
  readonly voiceId: string;
  readonly model: string;
  readonly #apiKey: string;
  readonly #baseUrl: string;
  readonly #errors: ElevenLabsErrors;
  readonly #warm = new WarmSocket();
  #client: ElevenLabsClient | undefined;

  constructor(private readonly opts: ElevenLabsTtsOptions) {
    this.sampleRate = opts.sampleRate ?? 16000;
    this.voiceId = opts.voiceId ?? ELEVENLABS_DEFAULT_VOICE_ID;
    this.model = opts.model ?? 'eleven_flash_v2_5';
    this.#apiKey = opts.apiKey;
    this.#baseUrl = (opts.baseUrl ?? ELEVENLABS_DEFAULT_BASE_URL).replace(/\/+$/, '');
    this.#errors = new ElevenLabsErrors(this.provider, this.#apiKey);
  }

  synthesize(text: AsyncIterable<string>, signal: AbortSignal, opts?: SpeakOptions): AsyncIterable<SpeechChunk> {
    const voiceId = opts?.voice ?? this.voiceId;
    if (this.opts.transport === 'http') {
      return speakSegmentsStreamed(text, signal, (t, s) => this.httpStream(t, s, voiceId), {
        ...this.opts,
        provider: this.provider,
        inputRate: this.sampleRate,
        sampleRate: this.sampleRate,
        firstByteTimeoutMs: this.opts.firstByteTimeoutMs ?? 10_000,
        toError: (err) => this.#errors.fromSdk(err),
      });
    }
    return this.streamInput(text, signal, voiceId);
  }

  async prewarm(): Promise<void> {
    if (this.opts.transport === 'http') {
      try {
        await this.client().voices.get(this.voiceId, {}, { maxRetries: 0, timeoutInSeconds: 5 });
      } catch {
        // A failed prewarm leaves the first request to connect itself.
      }
      return;
    }
    await this.#warm.prewarm(() => this.open(this.voiceId), this.opts.prewarmIdleMs ?? 15_000);
  }

  /** Closes a prewarmed socket nobody took. */
  close(): void {
    this.#warm.close();
  }

  private async *streamInput(
    text: AsyncIterable<string>,
    signal: AbortSignal,
    voiceId: string,
  ): AsyncGenerator<SpeechChunk> {
    if (signal.aborted) return;
    // The prewarmed socket speaks the default voice: another voice opens its own.
    const conn = (voiceId === this.voiceId ? this.#warm.take() : undefined) ?? this.open(voiceId);
    const call = new StreamInputCall(conn, signal, {
      ...this.opts,
      sampleRate: this.sampleRate,
      chunkMs: this.opts.chunkMs ?? 20,
      firstByteTimeoutMs: this.opts.firstByteTimeoutMs ?? 10_000,
      msPerCharEstimate: this.opts.msPerCharEstimate ?? 65,
      init: initMessage(this.opts),
      errors: this.#errors,
    });
    yield* call.run(text);
  }

  private open(voiceId: string): Conn {
    const params = new URLSearchParams({
      model_id: this.model,
      output_format: `pcm_${this.sampleRate}`,
      sync_alignment: 'true',
    });
    if (this.opts.languageCode) params.set('language_code', this.opts.languageCode);
    if (this.opts.inactivityTimeoutS) params.set('inactivity_timeout', String(this.opts.inactivityTimeoutS));
    const base = this.#baseUrl.replace(/^http/, 'ws');
    const url = `${base}/v1/text-to-speech/${encodeURIComponent(voiceId)}/stream-input?${params}`;
    return openSocket(url, {
      apiKey: this.#apiKey,
      connectTimeoutMs: this.opts.connectTimeoutMs ?? 10_000,
      errors: this.#errors,
    });
  }

  private client(): ElevenLabsClient {
    this.#client ??= new ElevenLabsClient({
      apiKey: this.#apiKey,
      baseUrl: this.#baseUrl,
      maxRetries: this.opts.maxRetries ?? 1,
    });
    return this.#client;
  }

  private async httpStream(text: string, signal: AbortSignal, voiceId: string): Promise<AsyncIterable<Uint8Array>> {
    return this.client().textToSpeech.stream(
      voiceId,
      {
        text,
        modelId: this.model,
        outputFormat: `pcm_${this.sampleRate}` as ElevenLabs.TextToSpeechStreamRequestOutputFormat,
        ...(this.opts.languageCode ? { languageCode: this.opts.languageCode } : {}),
        ...(this.opts.voiceSettings ? { voiceSettings: this.opts.voiceSettings } : {}),
      },
      { abortSignal: signal },
    );
  }
}

const ElevenLabsEnv = z
  .object({
    ELEVENLABS_API_KEY: optionalEnv(z.string()),
    ELEVENLABS_VOICE_ID: optionalEnv(z.string()),
    ELEVENLABS_MODEL: optionalEnv(z.string()),
    ELEVENLABS_BASE_URL: optionalEnv(z.url()),
    ELEVENLABS_LANGUAGE: optionalEnv(z.string().min(2)),
    ELEVENLABS_TRANSPORT: optionalEnv(z.enum(['websocket', 'http'])),
  })
  .superRefine((e, ctx) => {
    if (!e.ELEVENLABS_API_KEY) ctx.addIssue({ code: 'custom', path: ['ELEVENLABS_API_KEY'], message: 'is required' });
  });

/**
 * `TTS_PROVIDER=elevenlabs`: `ELEVENLABS_API_KEY` (required), `ELEVENLABS_VOICE_ID`, `ELEVENLABS_MODEL`
 * (eleven_flash_v2_5), `ELEVENLABS_BASE_URL`, `ELEVENLABS_LANGUAGE`, `ELEVENLABS_TRANSPORT` (websocket|http).
 */
export function elevenLabsFromEnv(env: NodeJS.ProcessEnv): ElevenLabsTTS {
  const e = parseProviderEnv(ElevenLabsEnv, env, 'elevenlabs TTS');
  return new ElevenLabsTTS({
    apiKey: e.ELEVENLABS_API_KEY!,
    voiceId: e.ELEVENLABS_VOICE_ID,
    model: e.ELEVENLABS_MODEL,
    baseUrl: e.ELEVENLABS_BASE_URL,
    languageCode: e.ELEVENLABS_LANGUAGE,
    transport: e.ELEVENLABS_TRANSPORT,
  });
}
