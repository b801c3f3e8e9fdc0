import { DeepgramClient } from '@deepgram/sdk';
import { z } from 'zod';
import type { AudioChunk, STT, TranscriptEvent } from '../types.js';
import { connectLink, type Link } from './deepgram-link.js';
import { settingsOf, type DeepgramSttOptions, type Settings } from './deepgram-options.js';
import { LiveStream } from './deepgram-stream.js';

export { DEEPGRAM_STT_DEFAULTS, type DeepgramSttOptions } from './deepgram-options.js';

/**
 * Deepgram live STT on the official SDK (`@deepgram/sdk` v5, `listen.v1.connect`). One Deepgram stream per
 * `transcribe` call, linear16 mono at `sampleRate` (input at another rate is resampled), interim results,
 * endpointing, utterance end and VAD events on.
 *
 * Deepgram → TranscriptEvent:
 * - `Results` with `is_final: false` → a partial (`final: false, stable: false`) of the current segment.
 * - `Results` with `is_final: true` → a final (`stable: true`): Deepgram settles a segment's words once, so every
 *   is_final segment is one final (a long utterance can give several; the turn detector joins them). An
 *   is_final with no words (a silent segment) gives nothing.
 * - `speech_final: true` always comes on an is_final, so its final has been emitted by then: nothing more to do.
 * - `UtteranceEnd`: if words were heard (a partial) but no is_final covered them yet — endpointing off or too long —
 *   the last partial is emitted as the final now, so an utterance end always has its final; a later is_final
 *   gives only its words after that partial's (by word times), so no word is said twice.
 * - Input end: Finalize and CloseStream; the finals Deepgram sends before it closes are emitted, then a partial
 *   never finalized (a server that closed early) is emitted as a final, and iteration ends.
 * - Times: Deepgram's `start`/`duration` and word times count from the first audio byte of its socket; they are
 *   mapped to the session's clock through the `tsMs` of the chunks sent on that socket (words' span when present).
 *
 * Liveness: a KeepAlive goes out every `keepAliveMs` without audio (Deepgram closes a stream idle for 10 s).
 * If the socket drops mid-stream (not on abort), the stream reconnects up to `maxReconnects` times with the audio
 * clock kept: audio read while disconnected is held and sent on the new socket (with `maxBacklogMs` held, reading
 * pauses until it opens); a partial cut off by the drop is emitted as a final. Audio that went out on the old
 * socket shortly before the drop and that Deepgram had not answered yet is lost (the new stream never hears it).
 * When reconnecting fails, iteration throws a ProviderError (`connection` for drops; `server`/`timeout` if that is
 * what the last attempt met). A refused key (`auth`), a refused request (`bad-request`) and `rate-limit` throw at
 * once without retrying. Abort closes the socket at once and ends iteration quietly.
 */
export class DeepgramSTT implements STT {
  readonly provider = 'deepgram';
  readonly sampleRate: number;
  private readonly opts: Settings;
  private readonly client: DeepgramClient;
  private warm: { link: Link; timers: NodeJS.Timeout[] } | undefined;

  constructor(opts: DeepgramSttOptions) {
    if (!opts.apiKey) throw new Error('deepgram STT: apiKey is required');
    this.opts = settingsOf(opts);
    this.sampleRate = this.opts.sampleRate;
    this.client = new DeepgramClient({
      apiKey: opts.apiKey,
      ...(opts.baseUrl ? { baseUrl: opts.baseUrl } : {}),
    });
  }

  /**
   * Opens the socket the next `transcribe` will use, so the first result does not wait for DNS, TLS and the
   * WebSocket handshake. The socket is kept alive with KeepAlives and closed if no transcription takes it within
   * `prewarmIdleMs`. Never throws; calling it again while a warm socket is open does nothing.
   */
  async prewarm(): Promise<void> {
    if (this.warm && !this.warm.link.ended) return this.warm.link.ready.catch(() => {});
    const link = this.connect();
    const drop = () => {
      if (this.warm?.link !== link) return;
      this.releaseWarm()?.close();
    };
    const timers: NodeJS.Timeout[] = [setTimeout(drop, this.opts.prewarmIdleMs)];
    if (this.opts.keepAliveMs > 0) {
      timers.push(setInterval(() => link.send('KeepAlive'), this.opts.keepAliveMs));
    }
    for (const t of timers) t.unref();
    link.onEnd = drop;
    this.warm = { link, timers };
    await link.ready.catch(() => {});
  }

  /** Closes a warm socket nobody took. */
  close(): void {
    this.releaseWarm()?.close();
  }

  async *transcribe(audio: AsyncIterable<AudioChunk>, signal: AbortSignal): AsyncGenerator<TranscriptEvent> {
    if (signal.aborted) return;
    const stream = new LiveStream(this.opts, () => this.takeWarm() ?? this.connect(), signal);
    yield* stream.run(audio);
  }

  private connect(): Link {
    return connectLink(this.client, this.opts);
  }

  private takeWarm(): Link | undefined {
    const link = this.releaseWarm();
    if (link && !link.ended) return link;
    link?.close();
    return undefined;
  }

  private releaseWarm(): Link | undefined {
    const warm = this.warm;
    this.warm = undefined;
    if (!warm) return undefined;
    for (const t of warm.timers) clearTimeout(t);
    warm.link.onEnd = undefined;
    return warm.link;
  }
}

/** Variable name for each field, so errors name what the operator must set. */
const VARS = {
  apiKey: 'DEEPGRAM_API_KEY',
  model: 'DEEPGRAM_MODEL',
  language: 'DEEPGRAM_LANGUAGE',
  endpointingMs: 'DEEPGRAM_ENDPOINTING_MS',
  baseUrl: 'DEEPGRAM_BASE_URL',
} as const;

const DeepgramEnv = z.object({
  apiKey: z.string({ error: 'is required' }).min(1, 'is required'),
  model: z.string().min(1).optional(),
  language: z.string().min(1).optional(),
  endpointingMs: z
    .union([z.literal('false').transform(() => false as const), z.coerce.number().int().nonnegative()], {
      error: 'must be milliseconds (an integer ≥ 0) or false',
    })
    .optional(),
  baseUrl: z.url({ protocol: /^(https?|wss?)$/, error: 'must be an http(s) or ws(s) URL' }).optional(),
});

/**
 * `STT_PROVIDER=deepgram`: `DEEPGRAM_API_KEY` (required), `DEEPGRAM_MODEL` (default nova-3), `DEEPGRAM_LANGUAGE`
 * (default en-US), `DEEPGRAM_ENDPOINTING_MS` (default 300; `false` turns endpointing off), `DEEPGRAM_BASE_URL`
 * (self-hosted or a test server). Empty counts as unset.
 */
export function deepgramSttFromEnv(env: NodeJS.ProcessEnv): DeepgramSTT {
  const raw = Object.fromEntries(Object.entries(VARS).map(([field, name]) => [field, env[name] || undefined]));
  const parsed = DeepgramEnv.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const name = VARS[issue.path[0] as keyof typeof VARS] ?? String(issue.path[0]);
      return `${name} ${issue.message}`;
    });
    throw new Error(`invalid deepgram STT config: ${problems.join('; ')}`);
  }
  return new DeepgramSTT(parsed.data);
}
