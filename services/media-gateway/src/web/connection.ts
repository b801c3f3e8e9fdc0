import { SessionRefusedError } from '@va/actor';
import { UnknownAgentError } from '@va/agents';
import { Framer, runClock, micSilence } from '@va/audio';
import { FRAME_MS } from '@va/protocol';
import type { Logger } from '@va/telemetry';
import type { RawData, WebSocket } from 'ws';
import { SessionGoneError } from '../open-session.js';
import { MicQueue } from '../mic-queue.js';
import type { ClientLimiter } from './client-limits.js';
import { CLOSE, countRefusal, type WebLimits } from './limits.js';
import { ResumeRefusedError } from './resume-token.js';
import {
  WEB_SAMPLE_RATE,
  type PageEvent,
  type SessionFactory,
  type SessionRequest,
  type WebSession,
} from './session.js';

const FRAME_SAMPLES = (WEB_SAMPLE_RATE * FRAME_MS) / 1000;
const DROP_REPORT_EVERY_MS = 5000;
/** WebSocket close code seen when the connection ended without a closing handshake. */
const ABNORMAL_CLOSURE = 1006;
/** A socket is told of its bad messages at most this often per kind (a flood of them gets one answer a second). */
const ERROR_EVERY_MS = 1000;

/**
 * One socket and its session: the page's messages in (checked, rate-limited, reframed), the agent's frames and
 * events out (bounded: a client that does not read is cut off), idle and liveness checks.
 */
export class WebConnection {
  /** The page's PCM16 bytes → 20 ms frames → the frames waiting for the session's next tick. */
  private readonly framer = new Framer(FRAME_SAMPLES);
  readonly mic: MicQueue;
  session: WebSession | undefined;
  lastAudioAt = performance.now();
  awaitingPong = false;
  private reportedDrops = 0;
  private reportedAt = -Infinity;
  /** When the page was last told of a refused message, per error code. */
  private readonly lastErrorAt = new Map<string, number>();
  private windowStart = performance.now();
  private windowMessages = 0;

  constructor(
    readonly ws: WebSocket,
    readonly client: string,
    private readonly limits: WebLimits,
    private readonly server: { notePeak(bytes: number): void; log?: Logger },
  ) {
    this.mic = new MicQueue(Math.max(1, Math.round(limits.maxQueueMs / FRAME_MS)));
  }

  /**
   * The session behind this socket: opened through the factory (refused: the page is told "busy"), then one 20 ms
   * tick at a time — the page's next frame (comfort noise when it sent none) in, the agent's frame out — until
   * `stop` (the socket closed).
   */
  async serve(factory: SessionFactory, stop: AbortSignal, request: SessionRequest = {}): Promise<void> {
    const { ws } = this;
    try {
      try {
        this.session = await factory((e) => this.send(e), request);
      } catch (err) {
        if (err instanceof UnknownAgentError) {
          // The page asked for an agent nobody stored: say so, and do not come back for it (1008: no reconnect).
          this.send({ type: 'error', code: 'unknown-agent', message: err.message });
          this.close(CLOSE.badMessage, 'unknown agent');
          return;
        }
        if (err instanceof ResumeRefusedError || err instanceof SessionGoneError) {
          // A token that is forged, expired, or for a session that has ended: the page starts a new session.
          this.server.log?.warn({ err: err.message, client: this.client }, 'resume refused');
          this.send({ type: 'error', code: 'resume-refused', message: err.message });
          this.close(CLOSE.badMessage, 'resume refused');
          return;
        }
        if (err instanceof SessionRefusedError) {
          // The pipeline is full: the page says so and the caller tries again later (the refusal is logged).
          this.send({
            type: 'error',
            code: 'busy',
            message: `The agent is busy (${err.reason}). Try again in a moment.`,
          });
          this.close(CLOSE.overloaded, 'busy, try again');
          return;
        }
        this.server.log?.error({ err: String(err) }, 'web session failed to open');
        this.send({ type: 'error', code: 'internal', message: 'the session could not be opened' });
        this.close(CLOSE.internal, 'session failed');
        return;
      }
      if (ws.readyState !== ws.OPEN) return; // the page left while the session was opening
      const s = this.session;
      this.send({
        type: 'ready',
        sessionId: s.sessionId,
        sampleRate: WEB_SAMPLE_RATE,
        frameMs: FRAME_MS,
        resumeToken: s.resumeToken(),
        resumed: s.resumed,
      });
      const tick = (i: number) => {
        const agent = s.tick(this.mic.take() ?? micSilence(FRAME_SAMPLES, i + 1));
        if (agent) this.sendAudio(agent);
        return true;
      };
      await runClock(FRAME_MS, tick, stop);
    } catch (err) {
      this.server.log?.error({ err: String(err) }, 'web session failed');
      this.send({ type: 'error', code: 'internal', message: 'the session failed' });
      this.close(CLOSE.internal, 'session failed');
    }
  }

  /** Sends an event, or cuts the socket off if the client has stopped reading. */
  send(e: PageEvent): void {
    this.sendRaw(JSON.stringify(e), false);
  }

  /** Agent audio: skipped while the socket is backed up beyond `maxBufferedBytes` (the client catches up). */
  sendAudio(frame: Int16Array): void {
    if (this.ws.bufferedAmount > this.limits.maxBufferedBytes) return;
    this.sendRaw(Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength), true);
  }

  /**
   * Tells the page a message was refused — unless it was told of the same within the last second, or is not
   * reading (an answer per refused frame into a backed-up socket is what grew the gateway without bound).
   */
  refuseMessage(code: string, message: string): void {
    const now = performance.now();
    if (now - (this.lastErrorAt.get(code) ?? -Infinity) < ERROR_EVERY_MS) return;
    if (this.ws.bufferedAmount > this.limits.maxBufferedBytes) return;
    this.lastErrorAt.set(code, now);
    this.send({ type: 'error', code, message });
  }

  /** The gateway closed the socket (a limit, a refusal): the session ends with it. */
  closedByGateway = false;
  /** The gateway is shutting down: its sessions wait for their pages to resume them on another instance. */
  shuttingDown = false;

  close(code: number, reason: string): void {
    this.closedByGateway = true;
    if (this.ws.readyState === this.ws.OPEN || this.ws.readyState === this.ws.CONNECTING) this.ws.close(code, reason);
  }

  /**
   * Whether the socket's end ends the session, or only loses it (resumable). Ended: closed by a limit here, or
   * closed cleanly by the page (hung up: 1000, tab closed: 1001, no status: 1005). Lost: no closing handshake
   * (1006: the network, a proxy or a process died) or this gateway shutting down (the page resumes elsewhere).
   */
  sessionEnded(closeCode: number): boolean {
    if (this.shuttingDown) return false;
    return this.closedByGateway || closeCode !== ABNORMAL_CLOSURE;
  }

  onMessage(data: RawData, isBinary: boolean): void {
    const now = performance.now();
    if (now - this.windowStart >= 1000) {
      this.windowStart = now;
      this.windowMessages = 0;
    }
    if (++this.windowMessages > this.limits.maxMessagesPerSecond) {
      if (this.windowMessages === this.limits.maxMessagesPerSecond + 1) {
        countRefusal('message-rate');
        this.server.log?.warn(
          { sessionId: this.session?.sessionId, client: this.client, limit: this.limits.maxMessagesPerSecond },
          'web client sends too many messages; closed',
        );
        this.refuseMessage('rate-limited', `more than ${this.limits.maxMessagesPerSecond} messages a second`);
        this.close(CLOSE.badMessage, 'message rate');
      }
      return;
    }
    const bytes = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
    if (bytes.length > this.limits.maxMessageBytes) {
      return this.refuseMessage(
        'bad-message',
        `message of ${bytes.length} bytes refused: the limit is ${this.limits.maxMessageBytes}`,
      );
    }
    if (!isBinary) {
      return this.refuseMessage(
        'bad-message',
        'text messages are not accepted: send the microphone as binary PCM16 frames',
      );
    }
    if (bytes.length % 2 !== 0) {
      return this.refuseMessage(
        'bad-audio',
        `odd length ${bytes.length}: audio must be PCM16 mono ${WEB_SAMPLE_RATE} Hz`,
      );
    }
    this.lastAudioAt = now;
    for (const frame of this.framer.pushBytes(bytes)) this.mic.push(frame);
    // Reported once, then at most every few seconds: a page sending too fast does so for every frame.
    if (this.mic.dropped > this.reportedDrops && now - this.reportedAt >= DROP_REPORT_EVERY_MS) {
      this.server.log?.warn(
        { sessionId: this.session?.sessionId, dropped: this.mic.dropped },
        'microphone audio arrives faster than real time; oldest dropped',
      );
      this.reportedDrops = this.mic.dropped;
      this.reportedAt = now;
    }
  }

  private sendRaw(data: string | Buffer, binary: boolean): void {
    const ws = this.ws;
    if (ws.readyState !== ws.OPEN) return;
    const size = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
    if (ws.bufferedAmount + size > this.limits.maxSendBufferBytes) {
      // The client stopped reading: holding more for it would grow the gateway without bound.
      countRefusal('not-reading');
      this.server.log?.warn(
        { sessionId: this.session?.sessionId, client: this.client, buffered: ws.bufferedAmount },
        'web client does not read what it is sent; cut off',
      );
      ws.terminate();
      return;
    }
    ws.send(data, { binary });
    this.server.notePeak(ws.bufferedAmount);
  }
}

/** What the server's sockets share: the live connections, the closing ones, the per-client limiter. */
export interface Sockets {
  live: Map<WebSocket, WebConnection>;
  closing: Set<Promise<void>>;
  clients: ClientLimiter;
  limits: WebLimits;
  server: { notePeak(bytes: number): void; log?: Logger };
  factory: SessionFactory;
  log: Logger | undefined;
}

/** A socket past the upgrade checks: refused over the session cap, else served until it closes. */
export function acceptSocket(ws: WebSocket, client: string, sockets: Sockets, request: SessionRequest = {}): void {
  const { live, closing, clients, limits, server, factory, log } = sockets;
  const conn = new WebConnection(ws, client, limits, server);
  ws.on('error', (err) => log?.warn({ err: String(err) }, 'web socket error'));
  ws.on('pong', () => (conn.awaitingPong = false));
  if (live.size >= limits.maxSessions) {
    clients.release(client);
    countRefusal('sessions');
    conn.send({
      type: 'error',
      code: 'overloaded',
      message: `the gateway is at its limit of ${limits.maxSessions} sessions; try again later`,
    });
    conn.close(CLOSE.overloaded, 'too many sessions');
    return;
  }
  live.set(ws, conn);
  const stop = new AbortController();
  ws.on('message', (data: RawData, isBinary: boolean) => conn.onMessage(data, isBinary));

  const ended = new Promise<number>((resolve) => ws.once('close', (code: number) => resolve(code)));
  const run = conn.serve(factory, stop.signal, request);
  const done = ended
    .then(async (code) => {
      stop.abort();
      await run;
      await conn.session?.close(conn.sessionEnded(code));
    })
    .catch((err: unknown) => log?.error({ err: String(err) }, 'web session did not close cleanly'))
    .finally(() => {
      live.delete(ws);
      clients.release(client);
      closing.delete(done);
    });
  closing.add(done);
}

/** One timer for every socket: idle sockets are closed, sockets that stopped answering pings are cut off. */
export function watchConnections(live: Map<WebSocket, WebConnection>, limits: WebLimits, log: Logger | undefined) {
  const checkEveryMs = Math.max(20, Math.min(1000, limits.idleTimeoutMs / 4, limits.pingIntervalMs / 4));
  let lastPing = performance.now();
  const watchdog = setInterval(() => {
    const now = performance.now();
    const pingNow = now - lastPing >= limits.pingIntervalMs;
    if (pingNow) lastPing = now;
    for (const conn of live.values()) {
      if (conn.ws.readyState !== conn.ws.OPEN) continue;
      if (now - conn.lastAudioAt >= limits.idleTimeoutMs) {
        countRefusal('idle');
        log?.info({ sessionId: conn.session?.sessionId, client: conn.client }, 'web socket idle; closed');
        conn.send({ type: 'error', code: 'idle', message: `no microphone audio for ${limits.idleTimeoutMs / 1000} s` });
        conn.close(CLOSE.idle, 'idle');
      } else if (pingNow) {
        if (conn.awaitingPong) {
          countRefusal('no-pong');
          log?.info({ sessionId: conn.session?.sessionId, client: conn.client }, 'web socket did not answer a ping');
          conn.ws.terminate();
        } else {
          conn.awaitingPong = true;
          conn.ws.ping();
        }
      }
    }
  }, checkEveryMs);
  watchdog.unref();
  return watchdog;
}
