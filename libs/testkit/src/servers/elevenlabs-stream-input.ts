import type { RawData, WebSocket } from 'ws';
import type { ElevenLabsConnection, ElevenLabsServerFaults, ElevenLabsServerStats } from './elevenlabs-server.js';
import { sleep } from './local-http.js';
import { pcmBytes, toneFor } from './tone.js';

/** The default chunk length schedule: generate once this many characters are buffered (then the next, …). */
const SCHEDULE = [120, 160, 250, 290];

/** What a stream-input session needs from its server. */
export interface StreamInputContext {
  apiKey: string;
  /** Mutable, read as the session goes. */
  faults: ElevenLabsServerFaults;
  stats: ElevenLabsServerStats;
  msPerChar: number;
  charsPerMessage: number;
  delayMs: number;
  alignment: boolean;
  trimGenerations: boolean;
  inactivityTimeoutMs: number;
  /** A timer the server cancels when it closes. */
  later(ms: number, fn: () => void): NodeJS.Timeout;
}

/**
 * Text waiting to be generated. It goes on `flush`, on `try_trigger_generation` at 50+ characters, or once it
 * reaches the chunk length schedule's next threshold (then up to its last space).
 */
export class PendingText {
  private buffer = '';
  private scheduleAt = 0;

  /** Adds a message's (non-empty) text; returns the text to generate now, if any. */
  add(text: string, msg: Record<string, unknown>): string | undefined {
    this.buffer += text;
    if (msg.flush === true || (msg.try_trigger_generation === true && this.buffer.length >= 50)) return this.drain();
    const schedule =
      (msg.generation_config as { chunk_length_schedule?: number[] } | undefined)?.chunk_length_schedule ?? SCHEDULE;
    const threshold = schedule[Math.min(this.scheduleAt, schedule.length - 1)]!;
    const space = this.buffer.lastIndexOf(' ');
    if (this.buffer.length < threshold || space <= 0) return undefined;
    this.scheduleAt++;
    const ready = this.buffer.slice(0, space + 1);
    this.buffer = this.buffer.slice(space + 1);
    return ready;
  }

  /** All of it (a flush, the end of input). */
  drain(): string {
    const all = this.buffer;
    this.buffer = '';
    return all;
  }
}

/**
 * One `stream-input` WebSocket: checks the first message (and its key when the upgrade had none), buffers text,
 * sends each generation as audio messages one after another, ends with `{"isFinal": true}` after `{"text":""}`,
 * and closes with the provider's error message on bad input or inactivity.
 */
export class StreamInputSession {
  private readonly pending = new PendingText();
  private readonly idleMs: number;
  /** Generations go out one after another. */
  private outgoing: Promise<void> = Promise.resolve();
  private idle: NodeJS.Timeout | undefined;
  /** The input ended, or the server closed with an error. */
  private ended = false;
  private errorClosed = false;

  constructor(
    private readonly ws: WebSocket,
    private readonly conn: ElevenLabsConnection,
    private readonly rate: number,
    private readonly ctx: StreamInputContext,
  ) {
    this.idleMs = conn.query.has('inactivity_timeout')
      ? Number(conn.query.get('inactivity_timeout')) * 1000
      : ctx.inactivityTimeoutMs;
    this.armIdle();
    ws.on('message', (data: RawData, isBinary: boolean) => this.onMessage(data, isBinary));
    ws.on('close', () => this.onClose());
    ws.on('error', () => undefined);
  }

  private onMessage(data: RawData, isBinary: boolean): void {
    if (this.ended) return;
    this.armIdle();
    let msg: Record<string, unknown>;
    try {
      if (isBinary) throw new Error('binary');
      msg = JSON.parse(data.toString()) as Record<string, unknown>;
      if (typeof msg.text !== 'string') throw new Error('no text');
    } catch {
      return this.failWith(
        'invalid_input_message',
        'Could not parse input message, please make sure it is valid JSON with a "text" field.',
      );
    }
    this.conn.messages.push(msg);
    const text = msg.text as string;
    if (this.conn.messages.length === 1) return this.opening(msg, text);
    if (text === '') return this.endOfInput();
    const ready = this.pending.add(text, msg);
    if (ready !== undefined) this.generate(ready);
  }

  /** The first message: `{"text":" "}`, carrying the key if the upgrade had none. */
  private opening(msg: Record<string, unknown>, text: string): void {
    this.conn.firstMessageAt = performance.now();
    this.ctx.stats.sessions++;
    if (this.conn.auth === 'none') {
      const key = msg['xi-api-key'] ?? msg.xi_api_key;
      if (key !== this.ctx.apiKey) return this.failWith('auth_error', 'Invalid API key');
      this.conn.auth = 'message';
    }
    if (text !== ' ') return this.failWith('invalid_input_message', 'The first message must have text " ".');
  }

  /** `{"text":""}`: the rest is generated, then `{"isFinal": true}` and close 1000. */
  private endOfInput(): void {
    this.generate(this.pending.drain());
    this.ended = true;
    void this.outgoing.then(() => {
      if (!this.open()) return;
      this.ws.send(JSON.stringify({ isFinal: true }));
      this.conn.final = true;
      this.ctx.stats.finals++;
      this.ws.close(1000);
    });
  }

  private generate(buffered: string): void {
    const text = this.ctx.trimGenerations ? buffered.trim() : buffered;
    if (text === '') return;
    this.conn.generations.push(text);
    const chars = Array.from(text);
    this.outgoing = this.outgoing.then(() => this.sendAudio(chars));
  }

  /** One generation as audio messages of `charsPerMessage` characters. */
  private async sendAudio(chars: string[]): Promise<void> {
    const { faults, charsPerMessage } = this.ctx;
    if (faults.stallBeforeFirstByte) return new Promise<void>(() => undefined); // never
    for (let i = 0; i < chars.length; i += charsPerMessage) {
      if (!this.open()) return;
      if (faults.dropAfterMessages !== undefined && this.conn.audioMessages >= faults.dropAfterMessages) {
        this.ctx.stats.drops++;
        this.ws.terminate();
        return;
      }
      this.ws.send(JSON.stringify(this.audioMessage(chars.slice(i, i + charsPerMessage))));
      this.conn.audioMessages++;
      await sleep(this.ctx.delayMs);
    }
  }

  /** Audio for `piece`, with its alignment (times relative to the message). */
  private audioMessage(piece: string[]) {
    const { msPerChar, alignment } = this.ctx;
    const timing = {
      chars: piece,
      charStartTimesMs: piece.map((_, k) => k * msPerChar),
      charDurationsMs: piece.map(() => msPerChar),
    };
    return {
      audio: pcmBytes(toneFor(piece.join(''), msPerChar, this.rate)).toString('base64'),
      isFinal: null,
      normalizedAlignment: alignment ? timing : null,
      alignment: alignment ? timing : null,
    };
  }

  private open(): boolean {
    return this.ws.readyState === this.ws.OPEN && !this.conn.closed;
  }

  private armIdle(): void {
    if (this.idle) clearTimeout(this.idle);
    this.idle = this.ctx.later(this.idleMs, () => {
      if (this.ended) return;
      this.ctx.stats.inactivityCloses++;
      this.failWith(
        'input_timeout_exceeded',
        `Have not received a new text input within the timeout of ${(this.idleMs / 1000).toFixed(1)} seconds. Streaming input terminated. Please make sure to either feed the input in the timely manner, or to send the end of input text (empty string "") when done.`,
      );
    });
  }

  /** The provider's error message, then close 1008. */
  private failWith(error: string, message: string): void {
    this.ended = true;
    this.errorClosed = true;
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(JSON.stringify({ message, error, code: 1008 }));
    this.ws.close(1008, error);
  }

  private onClose(): void {
    this.conn.closed = true;
    this.ctx.stats.open--;
    if (this.idle) clearTimeout(this.idle);
    if (!this.conn.final && !this.errorClosed) {
      this.conn.disconnected = true;
      this.ctx.stats.disconnects++;
    }
  }
}
