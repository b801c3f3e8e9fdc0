import { DeepgramClient, type listen } from '@deepgram/sdk';
import { StreamResampler } from '@va/audio';
import { z } from 'zod';
import { kindOfStatus, ProviderError, redact, type ProviderErrorKind } from '../errors.js';
import type { AudioChunk, STT, TranscriptEvent } from '../types.js';
import { AsyncQueue } from '@va/stream';

export interface DeepgramSttOptions {
  apiKey: string;
  /** Self-hosted Deepgram or a test server (http(s):, ws(s):). Default: Deepgram's cloud. */
  baseUrl?: string;
  /** Default 'nova-3'. */
  model?: string;
  /** BCP-47 tag. Default 'en-US'. */
  language?: string;
  /** Silence (ms) after which Deepgram ends an utterance with `speech_final`; false turns endpointing off. Default 300. */
  endpointingMs?: number | false;
  /** Gap after the last word (ms) that makes Deepgram send `UtteranceEnd`. Default 1000 (Deepgram's minimum advice). */
  utteranceEndMs?: number;
  /** smart_format and punctuate. Default true. */
  smartFormat?: boolean;
  /** Rate sent to Deepgram (input at another rate is resampled). Default 16000. */
  sampleRate?: number;
  /** A KeepAlive after this long without audio on the socket (Deepgram closes idle streams after 10 s); 0: never. Default 4000. */
  keepAliveMs?: number;
  /** Reconnects allowed after a stream's socket drops, before it fails with `connection`. Default 3. */
  maxReconnects?: number;
  /** A socket that stayed up this long gives the stream its reconnect budget back. Default 10 s. */
  stableAfterMs?: number;
  /** Wait before the n-th reconnect: n × this. Default 100 ms. */
  reconnectBackoffMs?: number;
  /** Time allowed for the WebSocket handshake. Default 10 s. */
  connectTimeoutMs?: number;
  /** After CloseStream, how long to wait for the last results and the close. Default 5 s. */
  closeTimeoutMs?: number;
  /**
   * Audio held while the socket is not open (connecting, reconnecting) and sent once it is; with this much held,
   * reading the input pauses until the socket opens or the stream fails. Default 2 s.
   */
  maxBacklogMs?: number;
  /** A socket opened by prewarm() and not taken by a transcription is closed after this long. Default 20 s. */
  prewarmIdleMs?: number;
  /** Warnings (reconnects, dropped audio); pino-compatible. */
  logger?: { warn(obj: object, msg: string): void };
}

export const DEEPGRAM_STT_DEFAULTS = {
  model: 'nova-3',
  language: 'en-US',
  endpointingMs: 300,
  utteranceEndMs: 1000,
  smartFormat: true,
  sampleRate: 16000,
  keepAliveMs: 4000,
  maxReconnects: 3,
  stableAfterMs: 10_000,
  reconnectBackoffMs: 100,
  connectTimeoutMs: 10_000,
  closeTimeoutMs: 5000,
  maxBacklogMs: 2000,
  prewarmIdleMs: 20_000,
} as const;

type Settings = Required<Omit<DeepgramSttOptions, 'baseUrl' | 'logger'>> &
  Pick<DeepgramSttOptions, 'baseUrl' | 'logger'>;
type Socket = Awaited<ReturnType<DeepgramClient['listen']['v1']['connect']>>;
type Message =
  listen.ListenV1Results | listen.ListenV1UtteranceEnd | listen.ListenV1SpeechStarted | listen.ListenV1Metadata;

/** How a link ended: the close the SDK reported and, for a failed handshake or a socket error, the error. */
interface LinkEnd {
  code: number;
  reason: string;
  error?: Error;
}

/**
 * One SDK socket (one Deepgram stream). The SDK's own reconnects are off (`reconnectAttempts: 0`,
 * `shouldReconnect: () => false`): after a drop Deepgram's stream state is gone anyway, so the adapter opens a new
 * stream itself and keeps the audio clock. Handlers are swapped by whoever holds the link (prewarm, then a
 * transcription); `on()` of the SDK replaces handlers, so each is registered once and dispatches through these.
 */
class Link {
  onMessage: ((msg: Message) => void) | undefined;
  onOpen: (() => void) | undefined;
  onEnd: ((end: LinkEnd) => void) | undefined;
  opened = false;
  openedAt = 0;
  ended: LinkEnd | undefined;
  /** Resolves when open, rejects (a ProviderError) if it ended first. Never unhandled. */
  readonly ready: Promise<void>;
  private settle!: { resolve(): void; reject(err: unknown): void };
  private socket: Socket | undefined;
  private closing = false;

  /** `socket`: `listen.v1.connect()`, which resolves (after loading `ws` and auth) with a not yet started socket. */
  constructor(
    socket: Promise<Socket>,
    private readonly describe: (end: LinkEnd) => ProviderError,
  ) {
    this.ready = new Promise<void>((resolve, reject) => (this.settle = { resolve, reject }));
    this.ready.catch(() => {});
    socket.then(
      (s) => this.start(s),
      (err: unknown) =>
        this.finish({ code: 1006, reason: '', error: err instanceof Error ? err : new Error(String(err)) }),
    );
  }

  private start(socket: Socket): void {
    if (this.closing) {
      try {
        socket.close();
      } catch {
        // never started
      }
      return;
    }
    this.socket = socket;
    let pending: LinkEnd | undefined;
    // The SDK reports a failed handshake as close (1000) then error in the same tick: settle on the next one.
    const settleEnd = () => setImmediate(() => pending && this.finish(pending));
    socket.on('open', () => {
      if (this.ended || this.closing) return;
      this.opened = true;
      this.openedAt = performance.now();
      this.settle.resolve();
      this.onOpen?.();
    });
    socket.on('message', (msg) => {
      if (!this.ended && !this.closing && msg && typeof msg === 'object') this.onMessage?.(msg as Message);
    });
    socket.on('close', (event) => {
      pending ??= { code: event.code ?? 1006, reason: String(event.reason ?? '') };
      settleEnd();
    });
    socket.on('error', (error) => {
      pending = { code: pending?.code ?? 1006, reason: pending?.reason ?? '', error };
      settleEnd();
    });
    socket.connect();
  }

  private finish(end: LinkEnd): void {
    if (this.ended || this.closing) return;
    this.ended = end;
    this.settle.reject(this.describe(end));
    this.onEnd?.(end);
  }

  get open(): boolean {
    return this.opened && !this.ended && !this.closing && this.socket?.readyState === 1;
  }

  sendAudio(samples: Int16Array): void {
    if (this.open) this.socket!.sendMedia(samples);
  }

  send(type: 'KeepAlive' | 'Finalize' | 'CloseStream'): void {
    if (!this.open) return;
    const socket = this.socket!;
    if (type === 'KeepAlive') socket.sendKeepAlive({ type });
    else if (type === 'Finalize') socket.sendFinalize({ type });
    else socket.sendCloseStream({ type });
  }

  /** Closes at once (close frame 1000, or the handshake abandoned); no more handler calls. */
  close(): void {
    if (this.closing) return;
    this.closing = true;
    this.onMessage = this.onOpen = this.onEnd = undefined;
    this.settle.reject(new ProviderError('deepgram', 'connection', 'closed'));
    try {
      this.socket?.close();
    } catch {
      // already closed
    }
  }
}

/** Maps Deepgram's stream time (seconds from the first audio byte of one socket) to the session's audio clock. */
class StreamClock {
  /** Audio sent on this socket, ms. */
  sentMs = 0;
  /** Where the input's clock jumped (a gap, audio dropped while reconnecting): stream ms → session ms. */
  private readonly marks: { streamMs: number; tsMs: number }[] = [];

  /** Records a chunk about to be sent: its session time and its length. */
  sent(tsMs: number, durMs: number): void {
    const last = this.marks.at(-1);
    if (!last || Math.abs(last.tsMs + (this.sentMs - last.streamMs) - tsMs) > 5) {
      this.marks.push({ streamMs: this.sentMs, tsMs });
      if (this.marks.length > 1000) this.marks.splice(0, this.marks.length - 1000);
    }
    this.sentMs += durMs;
  }

  toSession(streamSec: number): number {
    const ms = streamSec * 1000;
    let mark = this.marks[0];
    if (!mark) return ms;
    for (let i = this.marks.length - 1; i >= 0; i--) {
      if (this.marks[i]!.streamMs <= ms) {
        mark = this.marks[i]!;
        break;
      }
    }
    return Math.round(mark.tsMs + (ms - mark.streamMs));
  }
}

/** What a failed handshake or a dropped socket means, in ProviderError terms (never with the key in it). */
function describeEnd(end: LinkEnd, apiKey: string, during: 'handshake' | 'stream'): ProviderError {
  const message = end.error?.message ?? '';
  const status = /Unexpected server response: (\d{3})/.exec(message)?.[1];
  if (status) {
    const code = Number(status);
    const kind = kindOfStatus(code);
    const what = kind === 'auth' ? 'the API key was refused' : `the handshake was refused`;
    return new ProviderError('deepgram', kind, `${what} (HTTP ${code})`, { status: code, cause: end.error });
  }
  if (message === 'TIMEOUT') return new ProviderError('deepgram', 'timeout', 'the WebSocket handshake timed out');
  let kind: ProviderErrorKind = 'connection';
  // DATA-xxxx closes (1008) say the audio or a message was unusable: another try fails the same way.
  if (end.code === 1008) kind = 'bad-request';
  const detail = redact(
    [message, end.reason && `close ${end.code} ${end.reason}`, !message && !end.reason ? `close ${end.code}` : '']
      .filter(Boolean)
      .join('; '),
    [apiKey],
  );
  const what = during === 'handshake' ? 'could not connect' : 'the stream was lost';
  return new ProviderError('deepgram', kind, `${what} (${detail})`, end.error ? { cause: end.error } : undefined);
}

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
    this.opts = { ...DEEPGRAM_STT_DEFAULTS, ...stripUndefined(opts) } as Settings;
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
    const o = this.opts;
    const args = {
      model: o.model,
      language: o.language,
      encoding: 'linear16',
      sample_rate: o.sampleRate,
      channels: 1,
      interim_results: 'true',
      endpointing: o.endpointingMs === false ? 'false' : o.endpointingMs,
      utterance_end_ms: o.utteranceEndMs,
      vad_events: 'true',
      smart_format: o.smartFormat ? 'true' : 'false',
      punctuate: o.smartFormat ? 'true' : 'false',
      reconnectAttempts: 0,
      shouldReconnect: () => false,
      connectionTimeoutInSeconds: o.connectTimeoutMs / 1000,
    } as const;
    return new Link(this.client.listen.v1.connect(args), (end) => describeEnd(end, o.apiKey, 'handshake'));
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

/** The state of one transcription: its sockets in turn, the audio clock, the events. */
class LiveStream {
  private readonly events = new AsyncQueue<TranscriptEvent>();
  private link: Link | undefined;
  private clock = new StreamClock();
  private stopped = false;
  private inputEnded = false;
  private closeSent = false;
  /** Deepgram's summary after CloseStream: the stream's results are all in. */
  private metadataSeen = false;
  private reconnectsLeft: number;
  private reconnects = 0;
  private lastSentAt = performance.now();
  private backlog: { samples: Int16Array; tsMs: number; durMs: number }[] = [];
  private backlogMs = 0;
  private readonly waiters: (() => void)[] = [];
  /** The last partial not yet covered by a final, on the current link. */
  private pending: (TranscriptEvent & { endSec: number }) | undefined;
  /** Stream time (s) up to which a final was made from a partial: words of a later is_final before it repeat it. */
  private synthesizedUpToSec = -1;
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(
    private readonly opts: Settings,
    private readonly open: () => Link,
    private readonly signal: AbortSignal,
  ) {
    this.reconnectsLeft = opts.maxReconnects;
  }

  async *run(audio: AsyncIterable<AudioChunk>): AsyncGenerator<TranscriptEvent> {
    const stop = () => this.stop();
    this.signal.addEventListener('abort', stop, { once: true });
    try {
      this.attach(this.open());
      if (this.opts.keepAliveMs > 0) {
        const every = Math.max(50, Math.min(1000, this.opts.keepAliveMs / 2));
        this.every(every, () => {
          if (this.link?.open && !this.closeSent && performance.now() - this.lastSentAt >= this.opts.keepAliveMs) {
            this.link.send('KeepAlive');
            this.lastSentAt = performance.now();
          }
        });
      }
      void this.pump(audio); // not awaited: a live input may never end; pump reports its own errors
      yield* this.events;
    } finally {
      this.signal.removeEventListener('abort', stop);
      this.stop();
    }
  }

  private stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.link?.close();
    this.link = undefined;
    this.events.cancel();
    this.wake();
  }

  private every(ms: number, fn: () => void): void {
    this.timers.add(setInterval(fn, ms));
  }

  private after(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }

  private attach(link: Link): void {
    this.link = link;
    this.clock = new StreamClock();
    this.pending = undefined;
    this.synthesizedUpToSec = -1;
    link.onMessage = (msg) => this.message(msg);
    link.onEnd = (end) => this.ended(link, end);
    const opened = () => {
      // A socket that stays up gives the stream its reconnect budget back.
      this.after(this.opts.stableAfterMs, () => {
        if (this.link === link && link.open) this.reconnectsLeft = this.opts.maxReconnects;
      });
      this.flushBacklog();
    };
    if (link.ended) {
      const end = link.ended;
      queueMicrotask(() => this.ended(link, end));
    } else if (link.opened) opened();
    else link.onOpen = opened;
  }

  private async pump(audio: AsyncIterable<AudioChunk>): Promise<void> {
    const rate = this.opts.sampleRate;
    let resampler: StreamResampler | undefined;
    let nextMs = 0;
    try {
      for await (const chunk of audio) {
        if (this.stopped) break;
        const tsMs = chunk.tsMs ?? nextMs;
        nextMs = tsMs + (chunk.samples.length * 1000) / chunk.sampleRate;
        let samples = chunk.samples;
        if (chunk.sampleRate !== rate) {
          if (resampler?.fromRate !== chunk.sampleRate) {
            resampler?.destroy();
            resampler = await StreamResampler.create(chunk.sampleRate, rate);
            if (this.stopped) break;
          }
          samples = resampler.push(samples);
        }
        if (samples.length === 0) continue;
        await this.sendAudio(samples, tsMs);
      }
      if (this.stopped) return;
      this.inputEnded = true;
      this.endInput();
    } catch (err) {
      if (!this.stopped) {
        this.events.fail(err);
        this.stop();
      }
    } finally {
      resampler?.destroy();
    }
  }

  private async sendAudio(samples: Int16Array, tsMs: number): Promise<void> {
    const durMs = (samples.length * 1000) / this.opts.sampleRate;
    if (this.link?.open && this.backlog.length === 0) {
      this.clock.sent(tsMs, durMs);
      this.link.sendAudio(samples);
      this.lastSentAt = performance.now();
      return;
    }
    // Not connected (yet, or again): hold the audio for the socket being opened; when enough is held, stop
    // reading the input until it opens (or the stream fails), so nothing said meanwhile is lost.
    this.backlog.push({ samples: samples.slice(), tsMs, durMs });
    this.backlogMs += durMs;
    while (this.backlogMs >= this.opts.maxBacklogMs && !this.stopped && !this.link?.open) {
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  /** Wakes a pump waiting for a socket (it opened, or the stream stopped). */
  private wake(): void {
    for (const resolve of this.waiters.splice(0)) resolve();
  }

  private flushBacklog(): void {
    const link = this.link;
    if (!link?.open) return;
    for (const { samples, tsMs, durMs } of this.backlog.splice(0)) {
      this.clock.sent(tsMs, durMs);
      link.sendAudio(samples);
    }
    this.backlogMs = 0;
    this.lastSentAt = performance.now();
    this.wake();
    if (this.inputEnded) this.endInput();
  }

  /** The input ended: settle what was heard (Finalize) and close the stream (CloseStream), then wait for the close. */
  private endInput(): void {
    const link = this.link;
    if (!link?.open || this.closeSent) return; // sent once the (re)connected socket opens
    this.closeSent = true;
    link.send('Finalize');
    link.send('CloseStream');
    this.after(this.opts.closeTimeoutMs, () => {
      if (this.link !== link) return;
      this.opts.logger?.warn({}, 'deepgram: no close after CloseStream; ending the stream');
      this.finish();
    });
  }

  private finish(): void {
    this.flushPending();
    this.events.end();
    this.stop();
  }

  private ended(link: Link, end: LinkEnd): void {
    if (this.stopped || this.link !== link) return;
    // The normal end: Deepgram answered CloseStream with its last results, Metadata and a close 1000.
    if (this.closeSent && (this.metadataSeen || (end.code === 1000 && !end.error))) return this.finish();
    const error = describeEnd(end, this.opts.apiKey, link.opened ? 'stream' : 'handshake');
    if (this.closeSent) {
      // Cut after the input ended but before Deepgram's last results: nothing is left to send a new stream.
      this.flushPending();
      return this.fail(
        new ProviderError(
          'deepgram',
          error.kind,
          `${error.message.replace(/^deepgram: /, '')} before the last results`,
          {
            cause: error,
          },
        ),
      );
    }
    this.flushPending();
    link.close();
    this.link = undefined;
    if (!error.retryable || error.kind === 'rate-limit') return this.fail(error);
    if (this.reconnectsLeft <= 0) {
      return this.fail(
        new ProviderError(
          'deepgram',
          error.kind,
          `${error.message.replace(/^deepgram: /, '')}; gave up after ${this.reconnects} reconnect(s)`,
          { cause: error },
        ),
      );
    }
    this.reconnectsLeft--;
    this.reconnects++;
    this.opts.logger?.warn({ reconnect: this.reconnects, reason: error.message }, 'deepgram: reconnecting');
    this.after((this.opts.maxReconnects - this.reconnectsLeft - 1) * this.opts.reconnectBackoffMs, () => {
      if (!this.stopped) this.attach(this.open());
    });
  }

  private fail(error: ProviderError): void {
    this.events.fail(error);
    this.stop();
  }

  private message(msg: Message): void {
    if (this.stopped) return;
    if (msg.type === 'Results') this.results(msg);
    else if (msg.type === 'UtteranceEnd') this.flushPending();
    else if (msg.type === 'Metadata') this.metadataSeen = this.closeSent;
    // SpeechStarted carries nothing a TranscriptEvent holds.
  }

  private results(msg: listen.ListenV1Results): void {
    const alt = msg.channel?.alternatives?.[0];
    let text = (alt?.transcript ?? '').trim();
    let words = alt?.words ?? [];
    if (msg.is_final) {
      // This segment is settled: whatever partial was showing is replaced by it (or was silence).
      this.pending = undefined;
      if (this.synthesizedUpToSec >= 0 && words.length) {
        // An UtteranceEnd already turned a partial of these words into a final: keep only the words after it.
        const fresh = words.filter((w) => w.start >= this.synthesizedUpToSec - 0.01);
        if (fresh.length < words.length) {
          words = fresh;
          text = fresh.map((w) => w.punctuated_word ?? w.word).join(' ');
        }
      }
      this.synthesizedUpToSec = -1;
    }
    if (!text) return;
    const startSec = words.length ? words[0]!.start : (msg.start ?? 0);
    const endSec = words.length ? words.at(-1)!.end : (msg.start ?? 0) + (msg.duration ?? 0);
    const startMs = this.clock.toSession(startSec);
    const event: TranscriptEvent = {
      text,
      final: msg.is_final === true,
      stable: msg.is_final === true,
      confidence: Math.min(1, Math.max(0, alt?.confidence ?? 0)),
      startMs,
      endMs: Math.max(startMs, this.clock.toSession(endSec)),
    };
    if (!event.final) this.pending = { ...event, endSec };
    this.events.push(event);
  }

  /** Emits the partial that no is_final covered as the utterance's final (see the mapping above). */
  private flushPending(): void {
    const p = this.pending;
    if (!p) return;
    this.pending = undefined;
    this.synthesizedUpToSec = p.endSec;
    const { endSec: _, ...event } = p;
    this.events.push({ ...event, final: true, stable: true });
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
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
