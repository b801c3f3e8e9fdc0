import WebSocket from 'ws';
import { AsyncQueue, linkAbort, type LinkedAbort } from '@va/stream';
import type { SpeechChunk } from '../types.js';
import { drainChunks, HeldChunk } from './chunk-queue.js';
import type { ElevenLabsErrors } from './elevenlabs-errors.js';
import { SpokenOffsets } from './elevenlabs-offsets.js';
import type { Conn } from './elevenlabs-socket.js';
import { alignmentOf, type Received, type WireInit, type WireSend, type WireText } from './elevenlabs-wire.js';
import { Pcm16Decoder } from './pcm16.js';
import { isSpeakable, SentenceSegmenter, type SentenceSegmenterOptions, type TextSegment } from './segmenter.js';

export interface StreamInputOptions extends SentenceSegmenterOptions {
  sampleRate: number;
  /** Chunk length, ms. */
  chunkMs: number;
  /** Time allowed from a flush (or the end of input) until audio. */
  firstByteTimeoutMs: number;
  /** Pace assumed for textOffset when the provider sends no alignment at all. */
  msPerCharEstimate: number;
  /** The connection's first message. */
  init: WireInit;
  errors: ElevenLabsErrors;
}

/**
 * One reply over one `stream-input` socket: the text goes out as it streams in (see {@link InputText}), the
 * audio comes back as chunks with the textOffset {@link SpokenOffsets} works out; `isFinal` after the end of
 * input ends the reply. A watchdog fails the call when audio (after a flush) or the end (after the input's end)
 * does not come within `firstByteTimeoutMs`. Abort: the socket is terminated at once and iteration ends quietly.
 */
export class StreamInputCall {
  readonly #link: LinkedAbort;
  readonly #ac: AbortController;
  readonly #ws: WebSocket;
  readonly #out = new AsyncQueue<SpeechChunk>();
  readonly #held: HeldChunk; // the newest chunk, held until we know whether it is the last
  readonly #decoder = new Pcm16Decoder();
  readonly #offsets: SpokenOffsets;
  readonly #input: InputText;
  #opened: boolean;
  #inputDone = false;
  #finished = false;
  #gotAudio = false;
  #watchdog: NodeJS.Timeout | undefined;

  constructor(
    private readonly conn: Conn,
    signal: AbortSignal,
    private readonly opts: StreamInputOptions,
  ) {
    this.#link = linkAbort(signal);
    this.#ac = this.#link.controller;
    this.#ws = conn.ws;
    this.#held = new HeldChunk(this.#out);
    this.#offsets = new SpokenOffsets({
      sampleRate: opts.sampleRate,
      chunkMs: opts.chunkMs,
      msPerChar: opts.msPerCharEstimate,
    });
    this.#input = new InputText(opts, this.#offsets, {
      send: (msg) => this.#send(msg),
      flushed: () => {
        if (!this.#gotAudio) this.#arm('audio');
      },
    });
    const ws = this.#ws;
    ws.on('message', (data: WebSocket.RawData) => this.#onMessage(data));
    this.#opened = ws.readyState === WebSocket.OPEN;
    ws.once('open', () => (this.#opened = true));
    ws.on('close', (code: number, reason: Buffer) => this.#onClose(code, reason.toString()));
  }

  async *run(text: AsyncIterable<string>): AsyncGenerator<SpeechChunk, void, undefined> {
    void this.#sendInput(text).catch((err: unknown) => this.#fail(err)); // a text source's own error is thrown as it is
    yield* drainChunks(this.#out, this.#link, () => this.#cleanup());
  }

  /** The reply is over (ended, failed) or aborted: nothing more is queued. */
  get #stopped(): boolean {
    return this.#out.closed || this.#ac.signal.aborted;
  }

  async #sendInput(text: AsyncIterable<string>): Promise<void> {
    await this.conn.ready;
    if (this.#ac.signal.aborted) return;
    this.#send(this.opts.init);
    for await (const delta of text) {
      if (this.#stopped) return;
      this.#input.push(delta);
    }
    if (this.#stopped) return;
    this.#input.finish();
    this.#inputDone = true;
    this.#send({ text: '' });
    this.#arm(this.#gotAudio || !this.#offsets.anyFlushed ? 'end of stream' : 'audio');
  }

  #onMessage(data: WebSocket.RawData): void {
    if (this.#stopped) return;
    let msg: Received;
    try {
      msg = JSON.parse(data.toString()) as Received;
    } catch (err) {
      return this.#fail(this.opts.errors.make('server', 'sent a message that is not JSON', err));
    }
    if (msg.error || (msg.message && !msg.audio)) return this.#fail(this.opts.errors.fromMessage(msg));
    if (this.#inputDone) this.#arm('end of stream');
    if (msg.audio) this.#onAudio(msg);
    if (msg.isFinal) this.#onFinal();
  }

  #onAudio(msg: Received): void {
    if (!this.#gotAudio && !this.#inputDone) clearTimeout(this.#watchdog);
    this.#gotAudio = true;
    const pcm = this.#decoder.push(Buffer.from(msg.audio ?? '', 'base64'));
    if (pcm.length === 0) return;
    for (const chunk of this.#offsets.chunks(pcm, alignmentOf(msg))) this.#held.hold(chunk);
  }

  #onFinal(): void {
    if (!this.#inputDone) return this.#fail(this.opts.errors.make('server', 'ended the stream before the input did'));
    this.#finished = true;
    clearTimeout(this.#watchdog);
    this.#held.release(this.#input.text.length); // the last chunk reports the text's length
    this.#out.end();
    this.#ws.close(1000);
  }

  #onClose(code: number, reason: string): void {
    // Before it opened, `conn.ready` reports why (the handshake's status), through the sender.
    if (!this.#opened || this.#finished || this.#stopped) return;
    this.#fail(this.opts.errors.fromClose(code, reason));
  }

  #send(msg: WireSend): void {
    if (this.#ws.readyState === WebSocket.OPEN) this.#ws.send(JSON.stringify(msg));
  }

  #arm(what: string): void {
    clearTimeout(this.#watchdog);
    const ms = this.opts.firstByteTimeoutMs;
    this.#watchdog = setTimeout(() => this.#fail(this.opts.errors.make('timeout', `no ${what} within ${ms} ms`)), ms);
  }

  #fail(err: unknown): void {
    if (this.#stopped) return;
    this.#out.fail(err);
    this.#ws.terminate();
  }

  #cleanup(): void {
    clearTimeout(this.#watchdog);
    const clean = this.#finished && !this.#ac.signal.aborted;
    this.#ac.abort();
    // Closed at once unless the provider finished: it sees the socket go and stops generating.
    if (!clean && this.#ws.readyState !== WebSocket.CLOSED) this.#ws.terminate();
  }
}

interface InputTextSink {
  send(msg: WireText): void;
  /** A flush went out: audio is due. */
  flushed(): void;
}

/**
 * The reply's text on its way to the provider: whole words as they stream in, and `flush: true` at each sentence
 * end (the shared segmenter finds them) so audio starts at the first sentence rather than at the provider's
 * buffer schedule. Segments with nothing to say are skipped. What goes out is recorded in `offsets`.
 */
export class InputText {
  /** The input so far. */
  text = '';
  #sentUpTo = 0; // input offset up to which text went out (or was skipped)
  #prevEnd = 0; // end of the previous segment
  readonly #segmenter: SentenceSegmenter;

  constructor(
    opts: SentenceSegmenterOptions,
    private readonly offsets: SpokenOffsets,
    private readonly sink: InputTextSink,
  ) {
    this.#segmenter = new SentenceSegmenter(opts);
  }

  push(delta: string): void {
    this.text += delta;
    this.#onSegments(this.#segmenter.push(delta));
    // Whole words of the sentence still being written go out now (the provider may start on long ones).
    const cut = lastWhitespace(this.text, this.#sentUpTo) + 1;
    if (cut > this.#sentUpTo && isSpeakable(this.text.slice(this.#sentUpTo, cut))) this.#sendText(cut, false);
  }

  /** The input has ended: the rest goes out. */
  finish(): void {
    this.#onSegments(this.#segmenter.flush());
  }

  #onSegments(segs: TextSegment[]): void {
    for (const seg of segs) {
      const partSent = this.#sentUpTo > this.#prevEnd;
      // A segment with nothing to say ("..." on its own) is not sent at all.
      if (partSent || isSpeakable(this.text.slice(this.#sentUpTo, seg.end))) {
        this.#sendText(Math.max(this.#sentUpTo, seg.end), true);
        this.offsets.flushed(seg.end);
      }
      this.#sentUpTo = Math.max(this.#sentUpTo, seg.end);
      this.#prevEnd = seg.end;
    }
  }

  #sendText(to: number, flush: boolean): void {
    const piece = this.text.slice(this.#sentUpTo, to);
    this.offsets.sent(piece, this.#sentUpTo);
    // A flush with nothing new (a forced cut inside text already sent) still has to say something.
    this.sink.send(flush ? { text: piece || ' ', flush: true } : { text: piece });
    this.#sentUpTo = Math.max(this.#sentUpTo, to);
    if (flush) this.sink.flushed();
  }
}

/** Index of the last whitespace character at or after `from`, or −1. */
function lastWhitespace(text: string, from: number): number {
  for (let i = text.length - 1; i >= from; i--) if (/\s/.test(text[i]!)) return i;
  return -1;
}
