import OpenAI from 'openai';
import { z } from 'zod';
import { kindOfStatus, ProviderError, redact } from '../errors.js';
import type { SpeakOptions, SpeechChunk, TTS } from '../types.js';
import type { SentenceSegmenterOptions } from './segmenter.js';
import { speakSegmentsStreamed } from './streamed-segments.js';
import { optionalEnv, parseProviderEnv } from '../env.js';

// The streamed-segment pipeline and the PCM decoder started out here; they stay importable from this module.
export { speakSegmentsStreamed, type SegmentAudioStream, type StreamedSegmentsOptions } from './streamed-segments.js';
export { Pcm16Decoder } from './pcm16.js';

/** OpenAI's `response_format: "pcm"`: raw 24 kHz, 16-bit signed little-endian, mono, no header. */
export const OPENAI_TTS_PCM_RATE = 24000;

export interface OpenAITtsOptions extends SentenceSegmenterOptions {
  /** OpenAI-compatible speech servers without auth ignore it, but the SDK wants one. */
  apiKey: string;
  /** Default OpenAI (`https://api.openai.com/v1`). */
  baseURL?: string;
  /** Default `gpt-4o-mini-tts`. */
  model?: string;
  /** Default `alloy`. */
  voice?: string;
  /** Speaking style (gpt-4o-mini-tts only; tts-1 refuses it). */
  instructions?: string;
  /** 0.25–4. */
  speed?: number;
  /**
   * Rate of the chunks this adapter yields. Default 24000: the provider's own, no resampling here (the tts
   * service resamples to the session rate once). Any other rate is resampled in the adapter, as a stream.
   */
  sampleRate?: number;
  /** Time allowed from a request until its first audio bytes. Default 10 s. */
  firstByteTimeoutMs?: number;
  /** SDK retries before a response starts (connection errors, 408/409/429/5xx). Default 1: latency first. */
  maxRetries?: number;
  /** Chunk length, ms. Default 20. */
  chunkMs?: number;
}

/**
 * OpenAI TTS (`POST /audio/speech`) through the `openai` SDK: one request per sentence (the segmenter cuts them as
 * the LLM streams), the PCM read from the response body as it arrives, so a sentence's first audio comes out
 * long before the provider has finished it.
 *
 * - Requests run one at a time, each as soon as its sentence is complete and the one before has been read, while
 *   earlier audio is still being consumed; a reply is not started over on failure.
 * - textOffset: the provider gives no timings, so chunks report the end of the sentence before theirs (nothing of
 *   their own sentence is claimed as spoken) and the last chunk of a sentence that sentence's end, exactly.
 * - Abort cancels the HTTP request in flight (the server sees the connection close) and ends quietly.
 * - `prewarm()` makes one cheap authenticated request (`GET /models`), so the connection (TLS included) is in the
 *   keep-alive pool when the first sentence is sent. Node's fetch keeps an idle connection about 4 s unless the
 *   server says longer: prewarm close to the first turn.
 */
export class OpenAITTS implements TTS {
  readonly provider = 'openai';
  readonly sampleRate: number;
  readonly model: string;
  readonly voice: string;
  readonly #client: OpenAI;
  readonly #apiKey: string;

  constructor(private readonly opts: OpenAITtsOptions) {
    this.sampleRate = opts.sampleRate ?? OPENAI_TTS_PCM_RATE;
    this.model = opts.model ?? 'gpt-4o-mini-tts';
    this.voice = opts.voice ?? 'alloy';
    this.#apiKey = opts.apiKey;
    this.#client = new OpenAI({
      apiKey: opts.apiKey,
      baseURL: opts.baseURL,
      maxRetries: opts.maxRetries ?? 1,
      timeout: opts.firstByteTimeoutMs ?? 10_000,
    });
  }

  synthesize(text: AsyncIterable<string>, signal: AbortSignal, opts?: SpeakOptions): AsyncIterable<SpeechChunk> {
    const voice = opts?.voice ?? this.voice;
    return speakSegmentsStreamed(text, signal, (input, s) => this.request(input, s, voice), {
      ...this.opts,
      provider: this.provider,
      inputRate: OPENAI_TTS_PCM_RATE,
      sampleRate: this.sampleRate,
      firstByteTimeoutMs: this.opts.firstByteTimeoutMs ?? 10_000,
      toError: (err) => this.toError(err),
    });
  }

  async prewarm(): Promise<void> {
    try {
      await this.#client.models.list({ maxRetries: 0, timeout: 5_000 });
    } catch {
      // A failed prewarm leaves the first request to connect itself.
    }
  }

  private async request(input: string, signal: AbortSignal, voice: string): Promise<AsyncIterable<Uint8Array>> {
    const res = await this.#client.audio.speech.create(
      {
        model: this.model,
        voice,
        input,
        response_format: 'pcm',
        ...(this.opts.instructions ? { instructions: this.opts.instructions } : {}),
        ...(this.opts.speed ? { speed: this.opts.speed } : {}),
      },
      { signal },
    );
    if (!res.body) throw new ProviderError(this.provider, 'server', 'speech response has no body');
    return res.body;
  }

  private toError(err: unknown): ProviderError {
    if (err instanceof ProviderError) return err;
    const message = redact(err instanceof Error ? err.message : String(err), [this.#apiKey]);
    const what = `speech ${this.model}`;
    if (err instanceof OpenAI.APIConnectionTimeoutError) {
      return new ProviderError(this.provider, 'timeout', `${what}: ${message}`, { cause: err });
    }
    if (err instanceof OpenAI.APIError && typeof err.status === 'number') {
      return new ProviderError(this.provider, kindOfStatus(err.status), `${what}: ${message}`, {
        cause: err,
        status: err.status,
      });
    }
    // APIConnectionError, or the body stream broke mid-sentence (undici: "terminated").
    return new ProviderError(this.provider, 'connection', `${what}: ${message}`, { cause: err });
  }
}

const OpenAITtsEnv = z
  .object({
    OPENAI_API_KEY: optionalEnv(z.string()),
    OPENAI_TTS_BASE_URL: optionalEnv(z.url()),
    OPENAI_BASE_URL: optionalEnv(z.url()),
    OPENAI_TTS_MODEL: optionalEnv(z.string()),
    OPENAI_TTS_VOICE: optionalEnv(z.string()),
    OPENAI_TTS_INSTRUCTIONS: optionalEnv(z.string()),
    OPENAI_TTS_SPEED: optionalEnv(z.coerce.number().min(0.25).max(4)),
    OPENAI_TTS_SAMPLE_RATE: optionalEnv(z.coerce.number().int().min(8000).max(48000)),
  })
  .superRefine((e, ctx) => {
    // With no base URL we talk to OpenAI itself, which needs a real key; local speech servers do not.
    if (!e.OPENAI_API_KEY && !e.OPENAI_TTS_BASE_URL && !e.OPENAI_BASE_URL) {
      ctx.addIssue({
        code: 'custom',
        path: ['OPENAI_API_KEY'],
        message: 'is required when OPENAI_TTS_BASE_URL / OPENAI_BASE_URL is not set (OpenAI)',
      });
    }
  });

/**
 * `TTS_PROVIDER=openai`: `OPENAI_API_KEY`, `OPENAI_TTS_MODEL` (gpt-4o-mini-tts), `OPENAI_TTS_VOICE` (alloy),
 * `OPENAI_TTS_BASE_URL` or `OPENAI_BASE_URL`, optional `OPENAI_TTS_INSTRUCTIONS`, `OPENAI_TTS_SPEED`,
 * `OPENAI_TTS_SAMPLE_RATE` (default 24000, the provider's own).
 */
export function openAITtsFromEnv(env: NodeJS.ProcessEnv): OpenAITTS {
  const e = parseProviderEnv(OpenAITtsEnv, env, 'openai TTS');
  return new OpenAITTS({
    apiKey: e.OPENAI_API_KEY ?? 'not-needed',
    baseURL: e.OPENAI_TTS_BASE_URL ?? e.OPENAI_BASE_URL,
    model: e.OPENAI_TTS_MODEL,
    voice: e.OPENAI_TTS_VOICE,
    instructions: e.OPENAI_TTS_INSTRUCTIONS,
    speed: e.OPENAI_TTS_SPEED,
    sampleRate: e.OPENAI_TTS_SAMPLE_RATE,
  });
}
