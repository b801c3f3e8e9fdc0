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

/** The options with every default filled in (what the adapter runs on). */
export type Settings = Required<Omit<DeepgramSttOptions, 'baseUrl' | 'logger'>> &
  Pick<DeepgramSttOptions, 'baseUrl' | 'logger'>;

/** The options over the defaults; an option set to undefined keeps its default. */
export function settingsOf(opts: DeepgramSttOptions): Settings {
  return { ...DEEPGRAM_STT_DEFAULTS, ...stripUndefined(opts) } as Settings;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
