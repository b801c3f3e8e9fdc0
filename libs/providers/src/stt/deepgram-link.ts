import type { DeepgramClient, listen } from '@deepgram/sdk';
import { kindOfStatus, ProviderError, redact, type ProviderErrorKind } from '../errors.js';
import type { Settings } from './deepgram-options.js';

type Socket = Awaited<ReturnType<DeepgramClient['listen']['v1']['connect']>>;
/** What Deepgram sends on a live stream. */
export type Message =
  listen.ListenV1Results | listen.ListenV1UtteranceEnd | listen.ListenV1SpeechStarted | listen.ListenV1Metadata;

/** How a link ended: the close the SDK reported and, for a failed handshake or a socket error, the error. */
export interface LinkEnd {
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
export class Link {
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

/** Opens a Deepgram live stream with the adapter's settings: linear16 mono, interim results, endpointing, VAD events. */
export function connectLink(client: DeepgramClient, o: Settings): Link {
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
  return new Link(client.listen.v1.connect(args), (end) => describeEnd(end, o.apiKey, 'handshake'));
}

/** What a failed handshake or a dropped socket means, in ProviderError terms (never with the key in it). */
export function describeEnd(end: LinkEnd, apiKey: string, during: 'handshake' | 'stream'): ProviderError {
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

/** The same error with more said about when it happened (`tail` follows its message), caused by it. */
export function withContext(error: ProviderError, tail: string): ProviderError {
  return new ProviderError('deepgram', error.kind, `${error.message.replace(/^deepgram: /, '')}${tail}`, {
    cause: error,
  });
}
