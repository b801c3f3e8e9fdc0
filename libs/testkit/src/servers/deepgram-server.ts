import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { validate } from './deepgram-query.js';
import { DeepgramStream, type DropPlan, type StreamOptions } from './deepgram-stream.js';
import { TextScript } from './deepgram-transcript.js';
import { authorization, LocalHttpServer, refuseUpgrade, refusesKey } from './local-http.js';

/**
 * A local stand-in for Deepgram's live transcription endpoint (`GET /v1/listen`, docs/provider-protocols.md §1),
 * for tests only. It speaks the real wire protocol — `Authorization: Token <key>` on the upgrade, binary linear16
 * audio in, `KeepAlive` / `Finalize` / `CloseStream` text frames, `Results` / `SpeechStarted` / `UtteranceEnd` /
 * `Metadata` JSON out, close 1000 after CloseStream and 1011 `NET-0001` after an idle stream — but it does not
 * recognise speech: an energy VAD finds utterances on the audio clock and each utterance "says" the next text of
 * its script. Faults (a slow handshake, a dropped connection, a refused key) are switched on through `faults`.
 */
export interface DeepgramServerOptions {
  /** The key the server accepts. Default 'test-key'. */
  apiKey?: string;
  /** What successive utterances say (cycled). Default ['hello there']. */
  texts?: readonly string[];
  /**
   * 'connection' (default): every connection starts at the first text, as independent Deepgram streams would
   * hear independent audio; 'server': one script across connections (a reconnected stream goes on with it).
   */
  textScope?: 'connection' | 'server';
  /** 10 ms frames louder than this are speech. Default −45 dBFS. */
  speechDbfs?: number;
  /** An interim `Results` every this much speech (audio time). Default 200 ms. */
  interimEveryMs?: number;
  /** Without audio or a text frame for this long the server closes with NET-0001 (Deepgram: 10 s). */
  idleTimeoutMs?: number;
  /**
   * Speech longer than this is finalized in segments (`is_final` without `speech_final`), as Deepgram does with
   * long utterances. Default 0: one segment per utterance.
   */
  segmentMs?: number;
  faults?: DeepgramServerFaults;
}

export interface DeepgramServerFaults {
  /** The upgrade is answered this much later (a slow TLS/handshake path). */
  handshakeDelayMs?: number;
  /** Each connection is cut (TCP reset, no close frame) this long after it opened. */
  dropAfterMs?: number;
  /** Each connection is cut once it has received this much audio (audio time, ms): a drop at a known point. */
  dropAtAudioMs?: number;
  /** Only this many more connections are cut (counted down as they are), the rest behave. Default: all. */
  dropConnections?: number;
  /** Every upgrade gets 401, whatever the key. */
  rejectAuth?: boolean;
}

/** One WebSocket connection as the server saw it. */
export interface DeepgramConnection {
  query: URLSearchParams;
  /** performance.now() when the upgrade request arrived and when the socket opened. */
  requestedAt: number;
  openedAt: number;
  closedAt?: number;
  /** How the socket ended: the close code sent or received (1006 for a cut). */
  closeCode?: number;
  bytes: number;
  keepAlives: number;
  /** `type` of every JSON message sent, in order (`Results` as `Results:interim` / `Results:final` / `Results:speech_final`). */
  sent: string[];
  /** performance.now() of the first audio byte. */
  firstAudioAt?: number;
}

export interface DeepgramServerStats {
  /** Upgrades accepted / refused. */
  connections: number;
  rejected: number;
  /** Sockets open now. */
  open: number;
  keepAlives: number;
  bytes: number;
  finalizes: number;
  closeStreams: number;
  /** Streams closed for idleness (NET-0001). */
  idleCloses: number;
  /** Connections cut by the dropAfterMs fault. */
  drops: number;
}

export interface DeepgramServer {
  /** Base URL for the SDK's `baseUrl` (http:, which ws turns into ws:). */
  readonly url: string;
  readonly apiKey: string;
  readonly stats: DeepgramServerStats;
  readonly connections: DeepgramConnection[];
  /** Mutable: tests switch faults on and off between calls. */
  readonly faults: DeepgramServerFaults;
  close(): Promise<void>;
}

export async function startDeepgramServer(opts: DeepgramServerOptions = {}): Promise<DeepgramServer> {
  const server = new DeepgramTestServer(opts);
  await server.listen();
  return server;
}

class DeepgramTestServer implements DeepgramServer {
  readonly apiKey: string;
  readonly faults: DeepgramServerFaults;
  readonly connections: DeepgramConnection[] = [];
  readonly stats: DeepgramServerStats = {
    connections: 0,
    rejected: 0,
    open: 0,
    keepAlives: 0,
    bytes: 0,
    finalizes: 0,
    closeStreams: 0,
    idleCloses: 0,
    drops: 0,
  };
  private readonly texts: readonly string[];
  /** One script across connections when textScope is 'server'. */
  private readonly serverScript: TextScript | undefined;
  private readonly streamOptions: Omit<StreamOptions, 'script' | 'drop'>;
  private readonly host = new LocalHttpServer(async (_req, res) => {
    res.writeHead(404).end();
  });
  private readonly wss = new WebSocketServer({ noServer: true });

  constructor(opts: DeepgramServerOptions) {
    this.apiKey = opts.apiKey ?? 'test-key';
    this.texts = opts.texts?.length ? opts.texts : ['hello there'];
    this.serverScript = opts.textScope === 'server' ? new TextScript(this.texts) : undefined;
    this.faults = { ...opts.faults };
    this.streamOptions = {
      stats: this.stats,
      idleTimeoutMs: opts.idleTimeoutMs ?? 10_000,
      speechDbfs: opts.speechDbfs ?? -45,
      interimEveryMs: opts.interimEveryMs ?? 200,
      segmentMs: opts.segmentMs ?? 0,
    };
    this.host.http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const requestedAt = performance.now();
      socket.on('error', () => {}); // a client that gives up mid-handshake is not the server's problem
      const delay = this.faults.handshakeDelayMs ?? 0;
      if (delay <= 0) return this.upgrade(req, socket, head, requestedAt);
      this.host.later(delay, () => this.upgrade(req, socket, head, requestedAt));
    });
  }

  get url(): string {
    return this.host.origin;
  }

  listen(): Promise<void> {
    return this.host.listen();
  }

  close(): Promise<void> {
    return this.host.close(async () => {
      for (const ws of this.wss.clients) ws.terminate();
      await new Promise<void>((resolve) => this.wss.close(() => resolve()));
    });
  }

  /** Checks path, key and query as Deepgram does (refusing with its error body), then opens the stream. */
  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, requestedAt: number): void {
    if (this.host.closing) return void socket.destroy();
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname !== '/v1/listen') {
      return this.refuse(socket, 404, 'NOT_FOUND', `no such path ${url.pathname}`);
    }
    if (refusesKey(this.faults, this.apiKey, authorization(req, 'Token'))) {
      return this.refuse(socket, 401, 'INVALID_AUTH', 'Invalid credentials.');
    }
    const problem = validate(url.searchParams);
    if (problem) return this.refuse(socket, 400, 'INVALID_QUERY_PARAMETER', problem);
    this.wss.handleUpgrade(req, socket, head, (ws) => this.serve(ws, url.searchParams, requestedAt));
  }

  private refuse(socket: Duplex, status: number, errCode: string, errMsg: string): void {
    this.stats.rejected++;
    const body = { err_code: errCode, err_msg: errMsg, request_id: randomUUID() };
    refuseUpgrade(socket, status, body, { 'dg-error': errMsg });
  }

  private serve(ws: WebSocket, query: URLSearchParams, requestedAt: number): void {
    this.stats.connections++;
    this.stats.open++;
    const record: DeepgramConnection = {
      query,
      requestedAt,
      openedAt: performance.now(),
      bytes: 0,
      keepAlives: 0,
      sent: [],
    };
    this.connections.push(record);
    // 'connection' scope: every stream starts at the first text, as independent streams hear independent audio.
    const script = this.serverScript ?? new TextScript(this.texts);
    new DeepgramStream(ws, record, { ...this.streamOptions, script, drop: this.claimDrop() });
  }

  /** The drop fault for a new connection, if it gets one (dropConnections counts down the ones still to cut). */
  private claimDrop(): DropPlan | undefined {
    const { dropAfterMs, dropAtAudioMs, dropConnections } = this.faults;
    if (dropAfterMs === undefined && dropAtAudioMs === undefined) return undefined;
    if ((dropConnections ?? Infinity) <= 0) return undefined;
    if (dropConnections !== undefined) this.faults.dropConnections = dropConnections - 1;
    return { afterMs: dropAfterMs, atAudioMs: dropAtAudioMs };
  }
}
