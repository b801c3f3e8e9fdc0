import { randomUUID } from 'node:crypto';
import type { RawData, WebSocket } from 'ws';
import type { DeepgramConnection, DeepgramServerStats } from './deepgram-server.js';
import { readQuery } from './deepgram-query.js';
import { DeepgramTranscript, type DeepgramMessage, type TextScript } from './deepgram-transcript.js';

/** Deepgram's NET-0001 text (https://developers.deepgram.com/docs/audio-keep-alive). */
const NET_0001 = 'NET-0001: Deepgram did not receive audio data or a text message within the timeout window.';

/** When the drop fault cuts this connection (either or both). */
export interface DropPlan {
  afterMs?: number;
  atAudioMs?: number;
}

/** What a stream needs from its server. */
export interface StreamOptions {
  stats: DeepgramServerStats;
  idleTimeoutMs: number;
  speechDbfs: number;
  interimEveryMs: number;
  segmentMs: number;
  script: TextScript;
  drop: DropPlan | undefined;
}

/**
 * One live stream: the audio clock of one connection (binary linear16 cut into 10 ms frames for its transcript),
 * its text messages (`KeepAlive`, `Finalize`, `CloseStream`), the idle timeout and the drop fault.
 */
export class DeepgramStream {
  private readonly requestId = randomUUID();
  private readonly sampleRate: number;
  private readonly frameSamples: number;
  private readonly transcript: DeepgramTranscript;
  /** Bytes of a frame not complete yet. */
  private carry = Buffer.alloc(0);
  private samplesSeen = 0;
  private ended = false;
  private idle: NodeJS.Timeout | undefined;
  private drop: NodeJS.Timeout | undefined;

  constructor(
    private readonly ws: WebSocket,
    private readonly record: DeepgramConnection,
    private readonly opts: StreamOptions,
  ) {
    const query = readQuery(record.query);
    this.sampleRate = query.sampleRate;
    this.frameSamples = Math.round(query.sampleRate / 100);
    this.transcript = new DeepgramTranscript({
      ...query,
      requestId: this.requestId,
      speechDbfs: opts.speechDbfs,
      interimEveryMs: opts.interimEveryMs,
      segmentMs: opts.segmentMs,
      script: opts.script,
      send: (msg) => this.send(msg),
    });
    this.touch();
    if (opts.drop?.afterMs !== undefined) this.drop = setTimeout(() => this.cut(), opts.drop.afterMs);
    ws.on('message', (data: RawData, isBinary: boolean) => this.onMessage(data, isBinary));
    ws.on('close', (code) => this.onClose(code));
    ws.on('error', () => {});
  }

  /** Stream time: the audio received so far, in ms. */
  private get clockMs(): number {
    return (this.samplesSeen * 1000) / this.sampleRate;
  }

  private onMessage(data: RawData, isBinary: boolean): void {
    if (this.ended) return;
    this.touch();
    const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
    if (isBinary) return this.audio(buf);
    let msg: { type?: unknown };
    try {
      msg = JSON.parse(buf.toString('utf8')) as { type?: unknown };
    } catch {
      return this.end(1008, 'DATA-0000: could not parse the text message');
    }
    const { stats } = this.opts;
    if (msg.type === 'KeepAlive') {
      this.record.keepAlives++;
      stats.keepAlives++;
    } else if (msg.type === 'Finalize') {
      stats.finalizes++;
      this.transcript.finalize(this.clockMs, { speechFinal: false, fromFinalize: true, whole: true });
    } else if (msg.type === 'CloseStream') {
      stats.closeStreams++;
      this.closeStream();
    }
  }

  /** CloseStream: the last Results, Metadata, close 1000. */
  private closeStream(): void {
    const nowMs = this.clockMs;
    this.transcript.closeStream(nowMs);
    this.send({
      type: 'Metadata',
      transaction_key: 'deprecated',
      request_id: this.requestId,
      sha256: '0'.repeat(64),
      created: new Date().toISOString(),
      duration: nowMs / 1000,
      channels: 1,
    });
    this.end(1000, '');
  }

  /** Binary audio: cut into whole frames for the transcript (the rest waits for the next message). */
  private audio(data: Buffer): void {
    this.record.bytes += data.length;
    this.opts.stats.bytes += data.length;
    this.record.firstAudioAt ??= performance.now();
    const frameBytes = this.frameSamples * 2;
    const buf = this.carry.length ? Buffer.concat([this.carry, data]) : data;
    let at = 0;
    for (; at + frameBytes <= buf.length; at += frameBytes) {
      const dropAt = this.opts.drop?.atAudioMs;
      if (dropAt !== undefined && this.clockMs >= dropAt) return this.cut();
      const samples = new Int16Array(this.frameSamples);
      for (let i = 0; i < this.frameSamples; i++) samples[i] = buf.readInt16LE(at + i * 2);
      const startMs = this.clockMs;
      this.samplesSeen += samples.length;
      this.transcript.hear(samples, startMs, this.clockMs);
    }
    this.carry = Buffer.from(buf.subarray(at));
  }

  /** Records what is sent (`Results` by kind, see DeepgramConnection.sent) and sends it while the socket is open. */
  private send(msg: DeepgramMessage): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    const empty = (msg as { channel?: { alternatives?: { transcript?: string }[] } }).channel?.alternatives?.[0]
      ?.transcript;
    const kind = empty === '' ? 'empty' : msg.speech_final ? 'speech_final' : msg.is_final ? 'final' : 'interim';
    this.record.sent.push(msg.type === 'Results' ? `Results:${kind}` : msg.type);
    this.ws.send(JSON.stringify(msg));
  }

  /** (Re)starts the idle timeout: without audio or a text message for that long, close with NET-0001. */
  private touch(): void {
    clearTimeout(this.idle);
    this.idle = setTimeout(() => {
      this.opts.stats.idleCloses++;
      this.end(1011, NET_0001);
    }, this.opts.idleTimeoutMs);
  }

  /** The drop fault: a TCP reset, no close frame. */
  private cut(): void {
    if (this.ended) return;
    this.ended = true;
    this.opts.stats.drops++;
    this.ws.terminate();
  }

  private end(code: number, reason: string): void {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.idle);
    clearTimeout(this.drop);
    this.ws.close(code, reason);
  }

  private onClose(code: number): void {
    clearTimeout(this.idle);
    clearTimeout(this.drop);
    this.ended = true;
    this.opts.stats.open--;
    this.record.closedAt = performance.now();
    this.record.closeCode = code;
  }
}
