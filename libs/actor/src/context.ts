import type { KV } from '@nats-io/kv';
import {
  channels,
  frameDurationMs,
  type AudioFrame,
  type SessionChannel,
  type SessionConfig,
  type SessionId,
  type SessionRequestChannel,
} from '@va/protocol';
import type {
  AudioDirection,
  Bus,
  BusSubscription,
  Handler,
  MessageMeta,
  PublishOptions,
  RequestOptions,
} from '@va/bus';
import { ATTR, counter, METRIC, type Logger } from '@va/telemetry';
import type { z } from 'zod';
import { AsyncQueue, SerialBacklog, type QueueStats } from '@va/stream';
import { sessionState, stateKey, type SessionState } from './session-state.js';
import { TurnCancellation } from './turns.js';

export { stateKey, type SessionState } from './session-state.js';

/**
 * How far (ms of audio) a session's audio may queue behind a stage slower than real time before the oldest is
 * dropped: well past any hiccup of a healthy stage, and a bounded few hundred KB per session when it is not.
 */
export const AUDIO_BACKLOG_MS = 5_000;
/** One warning per queue per this long while it keeps dropping (with the count since the last one). */
const DROP_WARN_EVERY_MS = 5_000;

export interface AudioSubscribeOptions {
  /** Audio (ms) that may wait while the handler is busy with an earlier frame; default AUDIO_BACKLOG_MS. */
  maxBacklogMs?: number;
}

export type StopReason = 'closed' | 'handover' | 'lost' | 'shutdown';

/** What a session actor is given: its session, the bus scoped to it, cancellation per turn, durable state. */
export class ActorContext {
  readonly log: Logger;
  private readonly session = new AbortController();
  private readonly turns = new TurnCancellation(this.session.signal);
  private readonly subs: BusSubscription[] = [];
  private readonly inFlight = new Set<Promise<unknown>>();
  /** Bounded queues of this session (audio backlogs, provider inputs), by name: their stats, and how to close. */
  private readonly queues = new Map<string, { stats(): QueueStats; close(): void }>();
  private readonly warned = new Map<string, { at: number; since: number }>();
  /** Called by the host when a turn is cancelled (after its signal fired). */
  onCancel?: (turnId: string, reason: string) => void;
  /**
   * Called by the host when this instance's NATS connection is made again after a loss (its server died): what
   * was sent to it meanwhile is gone (core NATS delivers at most once), so an actor asks again for what it cannot
   * miss.
   */
  onReconnect?: () => void;

  constructor(
    readonly sessionId: SessionId,
    readonly config: SessionConfig,
    readonly stage: string,
    readonly bus: Bus,
    stateKv: KV,
    /** True when this actor took the session over from an instance that died or handed it over. */
    readonly reclaimed: boolean,
    log: Logger,
  ) {
    this.log = log.child({ sessionId });
    const key = (name: string) => stateKey(stage, sessionId, name);
    this.state = sessionState(stateKv, key, (work) => this.track(work), this.log, this.session.signal);
  }

  /** Fires when the session ends here (closed, handed over, lost, shut down). */
  get signal(): AbortSignal {
    return this.session.signal;
  }

  /**
   * The signal of one turn: fires on `control cancel` for that turn (or when the session ends here). A turn
   * cancelled before its first message arrives gets an already-aborted signal.
   */
  turnSignal(turnId: string): AbortSignal {
    return this.turns.signal(turnId);
  }

  /** True when the turn was cancelled: data messages of it are stale. */
  isCancelled(turnId: string): boolean {
    return this.turns.isCancelled(turnId);
  }

  /** Why the turn was cancelled (the `control cancel` reason), or undefined if it was not. */
  cancelReason(turnId: string): string | undefined {
    return this.turns.reason(turnId);
  }

  /** Forgets a finished turn's controller (its cancellation, if any, is still remembered). */
  endTurn(turnId: string): void {
    this.turns.end(turnId);
  }

  /** Cancels turns on this session's `control cancel` messages (the host does this for every actor). */
  followControl(): void {
    this.subscribe(channels.control, (m) => this.cancelTurn(m.turnId, m.reason));
  }

  /** @internal the host calls this on `control cancel`. */
  cancelTurn(turnId: string, reason: string): void {
    if (this.turns.remember(turnId, reason)) counter(METRIC.turnsCancelled).add(1, { [ATTR.stage]: this.stage });
    this.turns.abort(turnId, reason);
    this.onCancel?.(turnId, reason);
  }

  /**
   * Subscribes to one of this session's channels for the actor's life. Data-class messages of a cancelled
   * turn are dropped before the handler (the `va-turn` header says which turn they belong to).
   */
  subscribe<C extends SessionChannel>(ch: C, handler: Handler<z.output<C['schema']>>): void {
    this.subs.push(
      this.bus.subscribe(ch, this.sessionId, (msg, meta) => {
        if (ch.class === 'data' && meta.turnId !== undefined && this.turns.isCancelled(meta.turnId)) return;
        return handler(msg, meta);
      }),
    );
  }

  /**
   * Subscribes to this session's audio. Frames reach the handler one at a time, in order; while an asynchronous
   * handler is busy, later frames wait in a bounded backlog (`maxBacklogMs` of audio) and the oldest are dropped
   * (`va.audio.dropped`, reason `behind`) when the stage is slower than real time — never an unbounded queue in
   * the bus client.
   */
  subscribeAudio(direction: AudioDirection, handler: Handler<AudioFrame>, opts: AudioSubscribeOptions = {}): void {
    const name = `audio.${direction}`;
    const backlog = new SerialBacklog<[AudioFrame, MessageMeta]>(([frame, meta]) => handler(frame, meta), {
      capacity: opts.maxBacklogMs ?? AUDIO_BACKLOG_MS,
      weight: ([frame]) => frameDurationMs(frame),
      onDrop: () => this.dropped(name, 'behind'),
      // What the bus does for a handler that throws: log it (with the session), report it, keep serving.
      onError: (err, [, meta]) => this.bus.handlerFailed(meta.subject, err, this.log),
    });
    this.queues.set(name, { stats: () => backlog.stats, close: () => backlog.close() });
    this.subs.push(
      this.bus.subscribeAudio(direction, this.sessionId, (frame, meta) => {
        if (frame.turnId !== undefined && this.turns.isCancelled(frame.turnId)) {
          counter(METRIC.audioDropped).add(1, { [ATTR.stage]: this.stage, [ATTR.dropReason]: 'cancelled-turn' });
          return;
        }
        backlog.push([frame, meta]);
      }),
    );
  }

  /**
   * A queue of this session's audio for a provider that pulls it (a recogniser): bounded to `maxMs` of audio,
   * dropping the oldest (`va.audio.dropped`, reason `behind`) when the provider falls behind real time. Named so
   * its stats are found in `queueStats()`; a new queue of the same name replaces the old one there.
   */
  audioQueue<T extends { samples: Int16Array; sampleRate: number }>(
    name: string,
    maxMs = AUDIO_BACKLOG_MS,
  ): AsyncQueue<T> {
    const queue = new AsyncQueue<T>({
      capacity: maxMs,
      weight: (chunk) => (chunk.samples.length * 1000) / chunk.sampleRate,
      onDrop: () => this.dropped(name, 'behind'),
    });
    this.queues.set(name, { stats: () => queue.stats, close: () => queue.end() });
    return queue;
  }

  /** The session's bounded queues: what waits in each, the most that ever did, and what was dropped. */
  queueStats(): Record<string, QueueStats> {
    return Object.fromEntries([...this.queues].map(([name, q]) => [name, q.stats()]));
  }

  /**
   * Counts one item a bounded queue dropped (`va.audio.dropped`, or `va.messages.dropped` with its channel for
   * anything but audio) and warns — once per queue per few seconds, with how many went since the last warning.
   */
  dropped(queue: string, reason: string, channel?: string): void {
    const attributes = { [ATTR.stage]: this.stage, [ATTR.dropReason]: reason, [ATTR.queue]: queue };
    if (channel === undefined) counter(METRIC.audioDropped).add(1, attributes);
    else counter(METRIC.messagesDropped).add(1, { ...attributes, [ATTR.channel]: channel });
    this.warnLimited(`drop:${queue}:${reason}`, (n) =>
      this.log.warn(
        { queue, reason, dropped: n },
        reason === 'behind' ? 'stage behind real time: dropping oldest' : 'dropping',
      ),
    );
  }

  /**
   * Refuses a frame the bus could decode but this stage cannot use (e.g. the wrong sample rate): counted as a
   * rejected message and answered on the session's error subject, like a message that failed its schema.
   */
  rejectAudio(meta: MessageMeta, message: string, direction: AudioDirection = 'in'): void {
    const channel = `audio.${direction}`;
    this.bus.stats.rejected++;
    counter(METRIC.messagesRejected).add(1, { [ATTR.stage]: this.stage, [ATTR.channel]: channel });
    this.warnLimited(`reject:${channel}`, (n) =>
      this.log.warn(
        { subject: meta.subject, channel, code: 'bad-audio', reason: message, rejected: n },
        'message rejected',
      ),
    );
    this.bus.publishError(meta.subject, 'bad-audio', message);
  }

  private warnLimited(key: string, warn: (count: number) => void): void {
    const now = Date.now();
    const w = this.warned.get(key);
    if (w && now - w.at < DROP_WARN_EVERY_MS) {
      w.since++;
      return;
    }
    warn((w?.since ?? 0) + 1);
    this.warned.set(key, { at: now, since: 0 });
  }

  /** Answers one of this session's requests for the actor's life (the subscription goes with the session). */
  serve<C extends SessionRequestChannel>(
    ch: C,
    handler: (req: z.output<C['schema']>, meta: MessageMeta) => Promise<z.input<C['reply']>> | z.input<C['reply']>,
  ): void {
    this.subs.push(this.bus.serveSession(ch, this.sessionId, handler));
  }

  /** Asks whoever holds the other end of one of this session's requests. */
  request<C extends SessionRequestChannel>(
    ch: C,
    msg: z.input<C['schema']>,
    opts?: RequestOptions,
  ): Promise<z.output<C['reply']>> {
    return this.bus.requestSession(ch, this.sessionId, msg, opts);
  }

  publish<C extends SessionChannel>(ch: C, msg: z.input<C['schema']>, opts?: PublishOptions): void {
    this.bus.publish(ch, this.sessionId, msg, opts);
  }

  publishAudio(direction: AudioDirection, frame: AudioFrame, opts?: PublishOptions): void {
    this.bus.publishAudio(direction, this.sessionId, frame, opts);
  }

  /** Work in flight (a turn being answered): a graceful handover waits for it before releasing the session. */
  track<T>(work: Promise<T>): Promise<T> {
    this.inFlight.add(work);
    void work.then(
      () => this.inFlight.delete(work),
      () => this.inFlight.delete(work),
    );
    return work;
  }

  /** Durable per-session state (JetStream KV), read back by whichever instance holds the session next. */
  readonly state: SessionState;

  /** @internal resolves when tracked work is done, or after `timeoutMs`. */
  async idle(timeoutMs: number): Promise<boolean> {
    if (this.inFlight.size === 0) return true;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
    const done = Promise.allSettled([...this.inFlight]).then(() => true as const);
    const result = await Promise.race([done, timedOut]);
    clearTimeout(timer);
    return result;
  }

  /** @internal ends the session here: aborts every signal and drops the subscriptions. */
  close(reason: StopReason): void {
    this.session.abort(new Error(`session ${reason}`));
    for (const s of this.subs.splice(0)) s.unsubscribe();
    for (const q of this.queues.values()) q.close();
  }
}
