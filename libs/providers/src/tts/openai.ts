import OpenAI from 'openai';
import { z } from 'zod';
import { Framer, samplesForMs, silence, StreamResampler } from '@va/audio';
import { kindOfStatus, ProviderError, redact } from '../errors.js';
import type { SpeechChunk, TTS } from '../types.js';
import { isSpeakable, segmentSentences, type SentenceSegmenterOptions } from './segmenter.js';
import { optionalEnv, parseProviderEnv } from '../env.js';
import { AsyncQueue, linkAbort, untilAborted } from '@va/stream';

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

  synthesize(text: AsyncIterable<string>, signal: AbortSignal): AsyncIterable<SpeechChunk> {
    return speakSegmentsStreamed(text, signal, (input, s) => this.request(input, s), {
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

  private async request(input: string, signal: AbortSignal): Promise<AsyncIterable<Uint8Array>> {
    const res = await this.#client.audio.speech.create(
      {
        model: this.model,
        voice: this.voice,
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

// ---------------------------------------------------------------------------------------------------------------
// Shared by the HTTP-streaming adapters (OpenAI, ElevenLabs over HTTP). Belongs beside `speakStream` in stream.ts.

/** Opens one segment's audio: resolves when the response has started, with its body (raw PCM16 LE bytes). */
export type SegmentAudioStream = (text: string, signal: AbortSignal) => Promise<AsyncIterable<Uint8Array>>;

export interface StreamedSegmentsOptions extends SentenceSegmenterOptions {
  provider: string;
  /** Rate of the PCM the provider sends. */
  inputRate: number;
  /** Rate of the chunks yielded; resampled (as a stream) when it differs. */
  sampleRate: number;
  /** Time allowed from a request until its first audio bytes. */
  firstByteTimeoutMs: number;
  /** Chunk length, ms. Default 20. */
  chunkMs?: number;
  /** Turns whatever the request or the body read threw into a typed error. */
  toError: (err: unknown) => ProviderError;
}

const FIRST_BYTE_TIMEOUT = Symbol('first byte timeout');

/**
 * Like `speakStream`, but each segment's audio streams in as the provider sends it (a response body) instead of
 * arriving whole. Segments are requested one after another, independent of how fast chunks are consumed.
 * textOffset: every chunk of a segment reports the end of the segment before, its last chunk the segment's own
 * end. A final unspeakable segment becomes one silent chunk (the last textOffset reaches the text's length).
 * Abort or an early `return()`: the request in flight is cancelled and awaited, the iterable ends quietly; a
 * text source blocked in `next()` is left to the owner of the signal. Failures are thrown as the typed error.
 */
export async function* speakSegmentsStreamed(
  text: AsyncIterable<string>,
  signal: AbortSignal,
  open: SegmentAudioStream,
  opts: StreamedSegmentsOptions,
): AsyncGenerator<SpeechChunk, void, undefined> {
  if (signal.aborted) return;
  const link = linkAbort(signal);
  const ac = link.controller;
  const chunkMs = opts.chunkMs ?? 20;
  const rate = opts.sampleRate;
  const out = new AsyncQueue<SpeechChunk>();
  let resampler: StreamResampler | undefined;
  let inflight: Promise<unknown> = Promise.resolve();

  const speakOne = async (input: string, start: number, end: number): Promise<boolean> => {
    if (opts.inputRate !== rate && !resampler) {
      const created = await StreamResampler.create(opts.inputRate, rate);
      if (ac.signal.aborted) {
        created.destroy();
        return false;
      }
      resampler = created;
    }
    const req = new AbortController();
    const cancel = () => req.abort();
    ac.signal.addEventListener('abort', cancel, { once: true });
    const timer = setTimeout(() => req.abort(FIRST_BYTE_TIMEOUT), opts.firstByteTimeoutMs);
    const framer = new Framer(samplesForMs(chunkMs, rate));
    const decoder = new Pcm16Decoder();
    let pending: Int16Array | undefined; // held until the next frame shows it was not the segment's last
    const emit = (samples: Int16Array) => {
      if (pending) out.push({ samples: pending, sampleRate: rate, textOffset: start });
      pending = samples;
    };
    try {
      const body = await open(input, req.signal);
      for await (const bytes of body) {
        if (ac.signal.aborted) return false;
        if (bytes.length === 0) continue;
        clearTimeout(timer);
        const pcm = decoder.push(bytes);
        for (const f of framer.push(resampler ? resampler.push(pcm) : pcm)) emit(f);
      }
      const rest = framer.flush();
      if (rest) emit(rest);
      if (!pending) return false;
      out.push({ samples: pending, sampleRate: rate, textOffset: end });
      return true;
    } catch (err) {
      if (ac.signal.aborted) return false;
      if (req.signal.reason === FIRST_BYTE_TIMEOUT) {
        throw new ProviderError(opts.provider, 'timeout', `no audio within ${opts.firstByteTimeoutMs} ms`, {
          cause: err,
        });
      }
      throw opts.toError(err);
    } finally {
      clearTimeout(timer);
      ac.signal.removeEventListener('abort', cancel);
    }
  };

  void (async () => {
    let start = 0; // end offset of the previous segment
    let spoke = false;
    for await (const seg of segmentSentences(text, opts)) {
      if (ac.signal.aborted) return;
      if (isSpeakable(seg.text)) {
        const one = speakOne(seg.text, start, seg.end);
        inflight = one.catch(() => undefined);
        if (await one) spoke = true;
      } else if (spoke) {
        out.push({ ...silence(chunkMs, rate), textOffset: seg.end });
      }
      start = seg.end;
    }
  })().then(
    () => out.end(),
    (err: unknown) => out.fail(err),
  );

  try {
    yield* untilAborted(out, link);
  } catch (err) {
    if (!ac.signal.aborted) throw err;
  } finally {
    link.unlink();
    ac.abort();
    await inflight; // the cancelled request settles within a moment: nothing outlives the iterable
    resampler?.destroy();
    resampler = undefined;
  }
}

/** Raw little-endian PCM16 bytes, split anywhere (odd lengths too), to samples. */
export class Pcm16Decoder {
  private odd: number | undefined;

  push(bytes: Uint8Array): Int16Array {
    const total = bytes.length + (this.odd === undefined ? 0 : 1);
    const out = new Int16Array(total >> 1);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let i = 0;
    let n = 0;
    if (this.odd !== undefined && bytes.length > 0) {
      out[n++] = (((bytes[0]! << 8) | this.odd) << 16) >> 16;
      this.odd = undefined;
      i = 1;
    }
    for (; i + 1 < bytes.length; i += 2) out[n++] = view.getInt16(i, true);
    if (i < bytes.length) this.odd = bytes[i];
    return out;
  }
}
