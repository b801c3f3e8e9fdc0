import WebSocket from 'ws';
import { z } from 'zod';
import { ElevenLabsClient, ElevenLabsError, ElevenLabsTimeoutError, type ElevenLabs } from '@elevenlabs/elevenlabs-js';
import { frames } from '@va/audio';
import { kindOfStatus, ProviderError, redact, type ProviderErrorKind } from '../errors.js';
import type { SpeechChunk, TTS } from '../types.js';
import { isSpeakable, SentenceSegmenter, type SentenceSegmenterOptions, type TextSegment } from './segmenter.js';
import { Pcm16Decoder, speakSegmentsStreamed } from './openai.js';
import { optionalEnv, parseProviderEnv } from '../env.js';
import { AsyncQueue, linkAbort, untilAborted } from '@va/stream';

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

// Client → server messages as they go on the wire. The SDK exports their types (`ElevenLabs.InitializeConnection`,
// `SendText`, `CloseConnection`) in camelCase only; its serializers, which rename to snake_case, are not exported
// from the package root, so the wire shapes are spelled out here from them.
interface WireInit {
  text: ' ';
  voice_settings?: Record<string, number | boolean>;
  generation_config?: { chunk_length_schedule: number[] };
}
interface WireText {
  text: string;
  flush?: boolean;
}
interface WireClose {
  text: '';
}
type WireSend = WireInit | WireText | WireClose;

type Alignment = ElevenLabs.NormalizedAlignment & { charsStartTimesMs?: number[]; charsDurationsMs?: number[] };
/**
 * Server → client: the SDK's `ReceiveMessage` (`AudioOutput | FinalOutput`, camelCase on the wire too), as real
 * captures show it (nulls), plus the error message the provider sends before closing 1008.
 */
interface Received {
  audio?: ElevenLabs.AudioOutput['audio'] | null;
  isFinal?: boolean | null;
  alignment?: Alignment | null;
  normalizedAlignment?: Alignment | null;
  error?: string;
  message?: string;
  code?: number;
}

interface Conn {
  ws: WebSocket;
  /** Resolves once open; rejects with a ProviderError. */
  ready: Promise<void>;
}

interface Warm {
  conn: Conn;
  timer: NodeJS.Timeout;
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
  #client: ElevenLabsClient | undefined;
  #warm: Warm | undefined;

  constructor(private readonly opts: ElevenLabsTtsOptions) {
    this.sampleRate = opts.sampleRate ?? 16000;
    this.voiceId = opts.voiceId ?? ELEVENLABS_DEFAULT_VOICE_ID;
    this.model = opts.model ?? 'eleven_flash_v2_5';
    this.#apiKey = opts.apiKey;
    this.#baseUrl = (opts.baseUrl ?? ELEVENLABS_DEFAULT_BASE_URL).replace(/\/+$/, '');
  }

  synthesize(text: AsyncIterable<string>, signal: AbortSignal): AsyncIterable<SpeechChunk> {
    if (this.opts.transport === 'http') {
      return speakSegmentsStreamed(text, signal, (t, s) => this.httpStream(t, s), {
        ...this.opts,
        provider: this.provider,
        inputRate: this.sampleRate,
        sampleRate: this.sampleRate,
        firstByteTimeoutMs: this.opts.firstByteTimeoutMs ?? 10_000,
        toError: (err) => this.sdkError(err),
      });
    }
    return this.streamInput(text, signal);
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
    const existing = this.#warm;
    if (existing) return existing.conn.ready.catch(() => undefined);
    const conn = this.open();
    const warm: Warm = {
      conn,
      timer: setTimeout(() => {
        if (this.#warm !== warm) return;
        this.#warm = undefined;
        conn.ws.close(1000);
      }, this.opts.prewarmIdleMs ?? 15_000),
    };
    warm.timer.unref();
    this.#warm = warm;
    conn.ws.once('close', () => {
      if (this.#warm !== warm) return;
      this.#warm = undefined;
      clearTimeout(warm.timer);
    });
    await conn.ready.catch(() => undefined);
  }

  /** Closes a prewarmed socket nobody took. */
  close(): void {
    const warm = this.#warm;
    this.#warm = undefined;
    if (!warm) return;
    clearTimeout(warm.timer);
    warm.conn.ws.terminate();
  }

  private takeWarm(): Conn | undefined {
    const warm = this.#warm;
    this.#warm = undefined;
    if (!warm) return undefined;
    clearTimeout(warm.timer);
    const state = warm.conn.ws.readyState;
    return state === WebSocket.OPEN || state === WebSocket.CONNECTING ? warm.conn : undefined;
  }

  private open(): Conn {
    const params = new URLSearchParams({
      model_id: this.model,
      output_format: `pcm_${this.sampleRate}`,
      sync_alignment: 'true',
    });
    if (this.opts.languageCode) params.set('language_code', this.opts.languageCode);
    if (this.opts.inactivityTimeoutS) params.set('inactivity_timeout', String(this.opts.inactivityTimeoutS));
    const base = this.#baseUrl.replace(/^http/, 'ws');
    const url = `${base}/v1/text-to-speech/${encodeURIComponent(this.voiceId)}/stream-input?${params}`;
    const ws = new WebSocket(url, {
      headers: { 'xi-api-key': this.#apiKey },
      handshakeTimeout: this.opts.connectTimeoutMs ?? 10_000,
      perMessageDeflate: false,
    });
    ws.on('error', () => undefined); // reported through `ready` or the call's close handler
    const ready = new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('unexpected-response', (req, res) => {
        const status = res.statusCode ?? 0;
        let body = '';
        res.on('data', (d: Buffer) => (body = (body + d.toString('utf8')).slice(0, 500)));
        const done = () => {
          reject(
            this.error(kindOfStatus(status), `handshake refused: HTTP ${status} ${body.trim()}`, undefined, status),
          );
          req.destroy();
          ws.terminate();
        };
        res.once('end', done);
        setTimeout(done, 500).unref();
      });
      ws.once('error', (err) => {
        const timeout = /timed out/i.test(err.message);
        reject(this.error(timeout ? 'timeout' : 'connection', `cannot connect: ${err.message}`, err));
      });
      ws.once('close', (code) => reject(this.error('connection', `closed before it opened (${code})`)));
    });
    ready.catch(() => undefined);
    return { ws, ready };
  }

  private async *streamInput(text: AsyncIterable<string>, signal: AbortSignal): AsyncGenerator<SpeechChunk> {
    if (signal.aborted) return;
    const link = linkAbort(signal);
    const ac = link.controller;
    const conn = this.takeWarm() ?? this.open();
    const { ws } = conn;
    const out = new AsyncQueue<SpeechChunk>();
    const rate = this.sampleRate;
    const chunkMs = this.opts.chunkMs ?? 20;
    const timeoutMs = this.opts.firstByteTimeoutMs ?? 10_000;
    const map = new SentText();
    const decoder = new Pcm16Decoder();
    const flushedEnds: number[] = [];
    let full = ''; // the input so far
    let inputDone = false;
    let finished = false;
    let gotAudio = false;
    let aligned = false; // some message carried alignment
    let spoken = 0; // textOffset reported so far
    let playedMs = 0;
    let held: SpeechChunk | undefined; // the newest chunk, held until we know whether it is the last
    let watchdog: NodeJS.Timeout | undefined;

    const fail = (err: unknown) => {
      if (out.closed || ac.signal.aborted) return;
      out.fail(err);
      ws.terminate();
    };
    const arm = (what: string) => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => fail(this.error('timeout', `no ${what} within ${timeoutMs} ms`)), timeoutMs);
    };
    const send = (msg: WireSend) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
    };
    const emit = (samples: Int16Array, textOffset: number) => {
      if (held) out.push(held);
      held = { samples, sampleRate: rate, textOffset };
    };

    const onAudio = (msg: Received) => {
      const pcm = decoder.push(Buffer.from(msg.audio ?? '', 'base64'));
      if (pcm.length === 0) return;
      const al = alignmentOf(msg);
      const ends: number[] = [];
      const offs: number[] = [];
      if (al) {
        aligned = true;
        const msgMs = (pcm.length * 1000) / rate;
        // Times are relative to the chunk (SDK docs); should they count from the stream's start, rebase them.
        const rebase = (al.starts[0] ?? 0) > msgMs ? al.starts[0]! : 0;
        al.chars.forEach((c, i) => {
          offs.push(map.advance(c));
          ends.push((al.starts[i] ?? 0) - rebase + (al.durations[i] ?? 0));
        });
      }
      const parts = frames({ samples: pcm, sampleRate: rate }, chunkMs);
      let t = 0;
      parts.forEach((f, k) => {
        t += (f.samples.length * 1000) / rate;
        playedMs += (f.samples.length * 1000) / rate;
        if (al) {
          const last = k === parts.length - 1;
          for (let i = 0; i < ends.length; i++) if (last || ends[i]! <= t + 0.5) spoken = Math.max(spoken, offs[i]!);
        } else if (!aligned) {
          // No timings at all: a pace estimate, snapped down to a sentence end already flushed.
          const reached = map.inputOffsetAt(Math.floor(playedMs / (this.opts.msPerCharEstimate ?? 65)));
          for (const e of flushedEnds) if (e <= reached) spoken = Math.max(spoken, e);
        }
        emit(f.samples, spoken);
      });
    };

    ws.on('message', (data: WebSocket.RawData) => {
      if (out.closed || ac.signal.aborted) return;
      let msg: Received;
      try {
        msg = JSON.parse(data.toString()) as Received;
      } catch (err) {
        return fail(this.error('server', 'sent a message that is not JSON', err));
      }
      if (msg.error || (msg.message && !msg.audio)) return fail(this.messageError(msg));
      if (inputDone) arm('end of stream');
      if (msg.audio) {
        if (!gotAudio && !inputDone) clearTimeout(watchdog);
        gotAudio = true;
        onAudio(msg);
      }
      if (msg.isFinal) {
        if (!inputDone) return fail(this.error('server', 'ended the stream before the input did'));
        finished = true;
        clearTimeout(watchdog);
        if (held) out.push({ ...held, textOffset: full.length });
        held = undefined;
        out.end();
        ws.close(1000);
      }
    });
    let opened = ws.readyState === WebSocket.OPEN;
    ws.once('open', () => (opened = true));
    ws.on('close', (code: number, reason: Buffer) => {
      // Before it opened, `conn.ready` reports why (the handshake's status), through the sender.
      if (!opened || finished || out.closed || ac.signal.aborted) return;
      fail(this.closeError(code, reason.toString()));
    });

    const sender = async () => {
      await conn.ready;
      if (ac.signal.aborted) return;
      send(this.initMessage());
      const segmenter = new SentenceSegmenter(this.opts);
      let sentUpTo = 0; // input offset up to which text went out (or was skipped)
      let prevEnd = 0; // end of the previous segment
      const sendText = (to: number, flush: boolean) => {
        const piece = full.slice(sentUpTo, to);
        map.append(piece, sentUpTo);
        // A flush with nothing new (a forced cut inside text already sent) still has to say something.
        send(flush ? { text: piece || ' ', flush: true } : { text: piece });
        sentUpTo = Math.max(sentUpTo, to);
        if (flush && !gotAudio) arm('audio');
      };
      const onSegments = (segs: TextSegment[]) => {
        for (const seg of segs) {
          const partSent = sentUpTo > prevEnd;
          // A segment with nothing to say ("..." on its own) is not sent at all.
          if (partSent || isSpeakable(full.slice(sentUpTo, seg.end))) {
            sendText(Math.max(sentUpTo, seg.end), true);
            flushedEnds.push(seg.end);
          }
          sentUpTo = Math.max(sentUpTo, seg.end);
          prevEnd = seg.end;
        }
      };
      for await (const delta of text) {
        if (ac.signal.aborted || out.closed) return;
        full += delta;
        onSegments(segmenter.push(delta));
        // Whole words of the sentence still being written go out now (the provider may start on long ones).
        const cut = lastWhitespace(full, sentUpTo) + 1;
        if (cut > sentUpTo && isSpeakable(full.slice(sentUpTo, cut))) sendText(cut, false);
      }
      if (ac.signal.aborted || out.closed) return;
      onSegments(segmenter.flush());
      inputDone = true;
      send({ text: '' });
      arm(gotAudio || flushedEnds.length === 0 ? 'end of stream' : 'audio');
    };
    void sender().catch((err: unknown) => fail(err)); // a text source's own error is thrown as it is

    try {
      yield* untilAborted(out, link);
    } catch (err) {
      if (!ac.signal.aborted) throw err;
    } finally {
      link.unlink();
      clearTimeout(watchdog);
      const clean = finished && !ac.signal.aborted;
      ac.abort();
      // Closed at once unless the provider finished: it sees the socket go and stops generating.
      if (!clean && ws.readyState !== WebSocket.CLOSED) ws.terminate();
    }
  }

  private initMessage(): WireInit {
    const msg: WireInit = { text: ' ' };
    const v = this.opts.voiceSettings;
    if (v) {
      const settings: Record<string, number | boolean> = {};
      if (v.stability !== undefined) settings.stability = v.stability;
      if (v.similarityBoost !== undefined) settings.similarity_boost = v.similarityBoost;
      if (v.style !== undefined) settings.style = v.style;
      if (v.useSpeakerBoost !== undefined) settings.use_speaker_boost = v.useSpeakerBoost;
      if (v.speed !== undefined) settings.speed = v.speed;
      msg.voice_settings = settings;
    }
    if (this.opts.chunkLengthSchedule) msg.generation_config = { chunk_length_schedule: this.opts.chunkLengthSchedule };
    return msg;
  }

  private client(): ElevenLabsClient {
    this.#client ??= new ElevenLabsClient({
      apiKey: this.#apiKey,
      baseUrl: this.#baseUrl,
      maxRetries: this.opts.maxRetries ?? 1,
    });
    return this.#client;
  }

  private async httpStream(text: string, signal: AbortSignal): Promise<AsyncIterable<Uint8Array>> {
    return this.client().textToSpeech.stream(
      this.voiceId,
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

  private error(kind: ProviderErrorKind, message: string, cause?: unknown, status?: number): ProviderError {
    return new ProviderError(this.provider, kind, redact(message, [this.#apiKey]), { cause, status });
  }

  private sdkError(err: unknown): ProviderError {
    if (err instanceof ProviderError) return err;
    if (err instanceof ElevenLabsTimeoutError) return this.error('timeout', err.message, err);
    if (err instanceof ElevenLabsError && err.statusCode !== undefined) {
      const body = typeof err.body === 'string' ? err.body : JSON.stringify(err.body ?? '');
      return this.error(kindOfStatus(err.statusCode), `HTTP ${err.statusCode}: ${body}`, err, err.statusCode);
    }
    return this.error('connection', err instanceof Error ? err.message : String(err), err);
  }

  /** `{"message": …, "error": "input_timeout_exceeded", "code": 1008}` and the like. */
  private messageError(msg: Received): ProviderError {
    const text = `${msg.error ?? 'error'}: ${msg.message ?? ''}`.trim();
    return this.error(kindOfText(text) ?? 'server', text);
  }

  private closeError(code: number, reason: string): ProviderError {
    const text = `closed ${code}${reason ? ` ${reason}` : ''} before the end of the stream`;
    const kind = kindOfText(reason) ?? (code === 1008 ? 'bad-request' : code === 1011 ? 'server' : 'connection');
    return this.error(kind, text);
  }
}

function kindOfText(text: string): ProviderErrorKind | undefined {
  if (/api[_ -]?key|auth|unauthori[sz]ed|permission/i.test(text)) return 'auth';
  if (/quota|rate.?limit|too many|concurren/i.test(text)) return 'rate-limit';
  if (/timeout|timed out/i.test(text)) return 'timeout';
  if (/invalid|parse|unsupported|not allowed/i.test(text)) return 'bad-request';
  return undefined;
}

function alignmentOf(msg: Received): { chars: string[]; starts: number[]; durations: number[] } | undefined {
  // `alignment` is of the text as sent (it matches the input); `normalizedAlignment` of the provider's
  // normalized text ("42" → "forty two"), only a fallback.
  for (const al of [msg.alignment, msg.normalizedAlignment]) {
    if (!al?.chars?.length) continue;
    return {
      chars: al.chars,
      starts: al.charStartTimesMs ?? al.charsStartTimesMs ?? [],
      durations: al.charDurationsMs ?? al.charsDurationsMs ?? [],
    };
  }
  return undefined;
}

/** Index of the last whitespace character at or after `from`, or −1. */
function lastWhitespace(text: string, from: number): number {
  for (let i = text.length - 1; i >= from; i--) if (/\s/.test(text[i]!)) return i;
  return -1;
}

/**
 * The text sent to the provider (the input, less segments with nothing to say) with, for each of its UTF-16
 * units, the input offset just past it; and a cursor that follows the provider's alignment characters through it.
 */
class SentText {
  private sent = '';
  private ends: number[] = [];
  private cursor = 0;
  private offset = 0;

  append(piece: string, inputStart: number): void {
    this.sent += piece;
    for (let i = 1; i <= piece.length; i++) this.ends.push(inputStart + i);
  }

  /** Input offset just past the first `n` characters sent. */
  inputOffsetAt(n: number): number {
    if (n <= 0 || this.ends.length === 0) return 0;
    return this.ends[Math.min(n, this.ends.length) - 1]!;
  }

  /** Moves past one aligned character; returns the input offset spoken once it has been (non-decreasing). */
  advance(c: string): number {
    if (!c) return this.offset;
    const s = this.sent;
    let at = s.startsWith(c, this.cursor) ? this.cursor : -1;
    if (at < 0) {
      if (/^\s+$/.test(c)) return this.offset; // whitespace the provider added
      // Whitespace the provider dropped, or a character or two it changed: look a little ahead, no further.
      for (let q = this.cursor + 1; q < Math.min(s.length, this.cursor + 6); q++) {
        if (s.startsWith(c, q)) {
          at = q;
          break;
        }
      }
      if (at < 0) return this.offset;
    }
    this.cursor = at + c.length;
    this.offset = Math.max(this.offset, this.ends[this.cursor - 1] ?? this.offset);
    return this.offset;
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
