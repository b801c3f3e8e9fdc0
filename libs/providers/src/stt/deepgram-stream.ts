import { AsyncQueue } from '@va/stream';
import type { ProviderError } from '../errors.js';
import type { AudioChunk, TranscriptEvent } from '../types.js';
import { describeEnd, withContext, type Link, type LinkEnd, type Message } from './deepgram-link.js';
import type { Settings } from './deepgram-options.js';
import { SocketTranscript } from './deepgram-transcript.js';
import { resampledInput } from './resampled-input.js';

/** The state of one transcription: its sockets in turn, the audio clock, the events. */
export class LiveStream {
  private readonly events = new AsyncQueue<TranscriptEvent>();
  private readonly timers = new StreamTimers();
  private readonly backlog: AudioBacklog;
  private link: Link | undefined;
  /** The current socket's results and clock: Deepgram's times and state start over on each socket. */
  private transcript: SocketTranscript;
  private stopped = false;
  private inputEnded = false;
  private closeSent = false;
  /** Deepgram's summary after CloseStream: the stream's results are all in. */
  private metadataSeen = false;
  private reconnectsLeft: number;
  private reconnects = 0;
  private lastSentAt = performance.now();

  constructor(
    private readonly opts: Settings,
    private readonly open: () => Link,
    private readonly signal: AbortSignal,
  ) {
    this.reconnectsLeft = opts.maxReconnects;
    this.backlog = new AudioBacklog(opts.maxBacklogMs);
    this.transcript = this.newTranscript();
  }

  async *run(audio: AsyncIterable<AudioChunk>): AsyncGenerator<TranscriptEvent> {
    const stop = () => this.stop();
    this.signal.addEventListener('abort', stop, { once: true });
    try {
      this.attach(this.open());
      this.keepAlive();
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
    this.timers.clear();
    this.link?.close();
    this.link = undefined;
    this.events.cancel();
    this.backlog.wake();
  }

  private newTranscript(): SocketTranscript {
    return new SocketTranscript((event) => this.events.push(event));
  }

  /** A KeepAlive after `keepAliveMs` without audio on the socket (Deepgram closes a stream idle for 10 s). */
  private keepAlive(): void {
    if (this.opts.keepAliveMs <= 0) return;
    const every = Math.max(50, Math.min(1000, this.opts.keepAliveMs / 2));
    this.timers.every(every, () => {
      if (this.link?.open && !this.closeSent && performance.now() - this.lastSentAt >= this.opts.keepAliveMs) {
        this.link.send('KeepAlive');
        this.lastSentAt = performance.now();
      }
    });
  }

  private attach(link: Link): void {
    this.link = link;
    this.transcript = this.newTranscript();
    link.onMessage = (msg) => this.message(msg);
    link.onEnd = (end) => this.ended(link, end);
    const opened = () => {
      // A socket that stays up gives the stream its reconnect budget back.
      this.timers.after(this.opts.stableAfterMs, () => {
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
    try {
      for await (const { samples, startMs } of resampledInput(audio, this.opts.sampleRate)) {
        if (this.stopped) break;
        await this.sendAudio(samples, startMs);
      }
      if (this.stopped) return;
      this.inputEnded = true;
      this.endInput();
    } catch (err) {
      if (!this.stopped) this.fail(err);
    }
  }

  private async sendAudio(samples: Int16Array, tsMs: number): Promise<void> {
    const durMs = (samples.length * 1000) / this.opts.sampleRate;
    if (this.link?.open && this.backlog.empty) {
      this.transcript.clock.sent(tsMs, durMs);
      this.link.sendAudio(samples);
      this.lastSentAt = performance.now();
      return;
    }
    // Not connected (yet, or again): hold the audio for the socket being opened; when enough is held, stop
    // reading the input until it opens (or the stream fails), so nothing said meanwhile is lost.
    await this.backlog.hold({ samples: samples.slice(), tsMs, durMs }, () => !this.stopped && !this.link?.open);
  }

  private flushBacklog(): void {
    const link = this.link;
    if (!link?.open) return;
    for (const { samples, tsMs, durMs } of this.backlog.takeAll()) {
      this.transcript.clock.sent(tsMs, durMs);
      link.sendAudio(samples);
    }
    this.lastSentAt = performance.now();
    this.backlog.wake();
    if (this.inputEnded) this.endInput();
  }

  /** The input ended: settle what was heard (Finalize) and close the stream (CloseStream), then wait for the close. */
  private endInput(): void {
    const link = this.link;
    if (!link?.open || this.closeSent) return; // sent once the (re)connected socket opens
    this.closeSent = true;
    link.send('Finalize');
    link.send('CloseStream');
    this.timers.after(this.opts.closeTimeoutMs, () => {
      if (this.link !== link) return;
      this.opts.logger?.warn({}, 'deepgram: no close after CloseStream; ending the stream');
      this.finish();
    });
  }

  private finish(): void {
    this.transcript.flushPending();
    this.events.end();
    this.stop();
  }

  private ended(link: Link, end: LinkEnd): void {
    if (this.stopped || this.link !== link) return;
    // The normal end: Deepgram answered CloseStream with its last results, Metadata and a close 1000.
    if (this.closeSent && (this.metadataSeen || (end.code === 1000 && !end.error))) return this.finish();
    const error = describeEnd(end, this.opts.apiKey, link.opened ? 'stream' : 'handshake');
    this.transcript.flushPending();
    // Cut after the input ended but before Deepgram's last results: nothing is left to send a new stream.
    if (this.closeSent) return this.fail(withContext(error, ' before the last results'));
    link.close();
    this.link = undefined;
    this.reconnectOrFail(error);
  }

  /** After a drop: a new socket (after a backoff) while the budget lasts and another try can help. */
  private reconnectOrFail(error: ProviderError): void {
    if (!error.retryable || error.kind === 'rate-limit') return this.fail(error);
    if (this.reconnectsLeft <= 0) {
      return this.fail(withContext(error, `; gave up after ${this.reconnects} reconnect(s)`));
    }
    this.reconnectsLeft--;
    this.reconnects++;
    this.opts.logger?.warn({ reconnect: this.reconnects, reason: error.message }, 'deepgram: reconnecting');
    this.timers.after((this.opts.maxReconnects - this.reconnectsLeft - 1) * this.opts.reconnectBackoffMs, () => {
      if (!this.stopped) this.attach(this.open());
    });
  }

  private fail(error: unknown): void {
    this.events.fail(error);
    this.stop();
  }

  private message(msg: Message): void {
    if (this.stopped) return;
    if (msg.type === 'Results') this.transcript.results(msg);
    else if (msg.type === 'UtteranceEnd') this.transcript.flushPending();
    else if (msg.type === 'Metadata') this.metadataSeen = this.closeSent;
    // SpeechStarted carries nothing a TranscriptEvent holds.
  }
}

/** Audio read while no socket is open, with its place on the session's clock. */
interface HeldAudio {
  samples: Int16Array;
  tsMs: number;
  durMs: number;
}

/** Audio held for the socket being opened, sent once it is; with `maxMs` held, the reader waits. */
class AudioBacklog {
  private held: HeldAudio[] = [];
  private heldMs = 0;
  private readonly waiters: (() => void)[] = [];

  constructor(private readonly maxMs: number) {}

  get empty(): boolean {
    return this.held.length === 0;
  }

  /** Holds the audio; with `maxMs` held, resolves once a wake() finds `stillWaiting()` false (or room again). */
  async hold(audio: HeldAudio, stillWaiting: () => boolean): Promise<void> {
    this.held.push(audio);
    this.heldMs += audio.durMs;
    while (this.heldMs >= this.maxMs && stillWaiting()) {
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  /** Everything held, oldest first; the backlog is empty after. */
  takeAll(): HeldAudio[] {
    this.heldMs = 0;
    return this.held.splice(0);
  }

  /** Wakes a reader waiting for a socket (it opened, or the stream stopped). */
  wake(): void {
    for (const resolve of this.waiters.splice(0)) resolve();
  }
}

/** The timers of one stream: all cleared at once when it stops. */
class StreamTimers {
  private readonly all = new Set<NodeJS.Timeout>();

  every(ms: number, fn: () => void): void {
    this.all.add(setInterval(fn, ms));
  }

  after(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.all.delete(t);
      fn();
    }, ms);
    this.all.add(t);
  }

  clear(): void {
    for (const t of this.all) clearTimeout(t);
    this.all.clear();
  }
}
