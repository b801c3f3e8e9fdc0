import type { Msg, NatsConnection } from '@nats-io/transport-node';
import { context as otelContext, type Context } from '@opentelemetry/api';
import {
  anySessionSubject,
  encodeAudioFrame,
  parseSessionSubject,
  subjects,
  type AudioFrame,
  type SessionId,
} from '@va/protocol';
import type { BusCounters } from './counters.js';
import type { ErrorReporter } from './errors.js';
import type { MessageGate } from './gate.js';
import type { Subscriptions } from './subscriptions.js';
import { TraceHeaderCache, TraceReader } from './trace-headers.js';
import type { AudioDirection, BusSubscription, Handler, MessageMeta, SubscribeOptions } from './types.js';

/**
 * The audio path of a connection: binary frames whose metadata travels in the payload (see `encodeAudioFrame`),
 * sent and received without per-frame JSON, header encoding or promises.
 */
export class AudioPath {
  /** Encoded trace headers of recent contexts: audio frames of one turn share one encoding. */
  private readonly traceHeaders = new TraceHeaderCache();

  constructor(
    private readonly nc: NatsConnection,
    private readonly counters: BusCounters,
    private readonly gate: MessageGate,
    private readonly errors: ErrorReporter,
    private readonly subs: Subscriptions,
  ) {}

  /** Publishes one frame, its trace context in NATS headers encoded once per context (a turn's frames share it). */
  publish(direction: AudioDirection, sessionId: SessionId, frame: AudioFrame, context?: Context): void {
    const data = encodeAudioFrame(frame);
    const headers = this.traceHeaders.get(context ?? otelContext.active());
    this.nc.publish(audioSubject(direction, sessionId), data, headers ? { headers } : undefined);
    this.counters.published(audioChannel(direction));
  }

  /** Subscribes to one session's audio (or every session's with `'*'`); see `Bus.subscribeAudio`. */
  subscribe(
    direction: AudioDirection,
    sessionId: SessionId | '*',
    handler: Handler<AudioFrame>,
    opts: SubscribeOptions,
  ): BusSubscription {
    const channel = audioChannel(direction);
    const subject = sessionId === '*' ? anySessionSubject(channel) : audioSubject(direction, sessionId);
    const fixed = sessionId === '*' ? undefined : { subject, sessionId };
    return this.subs.listen(subject, opts, this.frameReceiver(channel, fixed, handler));
  }

  /**
   * Checks, decodes and hands over each frame of one subscription. A handler that returns a promise is not
   * awaited: its failure is reported like a thrown error.
   */
  private frameReceiver(
    channel: string,
    fixed: { subject: string; sessionId: SessionId } | undefined,
    handler: Handler<AudioFrame>,
  ): (m: Msg) => void {
    // Frames of one turn carry the same trace headers: read once, reused while the bytes are the same.
    const trace = new TraceReader();
    return (m) => {
      const context = trace.read(m);
      const frame = this.gate.frame(channel, m, trace.relayed);
      if (frame === undefined) return;
      // The subject of a one-session subscription is known: not decoded and parsed again per frame.
      const subj = fixed?.subject ?? m.subject;
      const sid = fixed?.sessionId ?? parseSessionSubject(subj)?.sessionId;
      const meta: MessageMeta = {
        subject: subj,
        ...(sid ? { sessionId: sid } : {}),
        ...(frame.turnId !== undefined ? { turnId: frame.turnId } : {}),
        context,
      };
      try {
        const done = handler(frame, meta);
        if (done instanceof Promise) done.catch((err: unknown) => this.errors.handlerFailed(m.subject, err));
      } catch (err) {
        this.errors.handlerFailed(m.subject, err);
      }
    };
  }
}

function audioChannel(direction: AudioDirection): 'audio.in' | 'audio.out' {
  return direction === 'in' ? 'audio.in' : 'audio.out';
}

function audioSubject(direction: AudioDirection, sessionId: SessionId): string {
  return direction === 'in' ? subjects.audioIn(sessionId) : subjects.audioOut(sessionId);
}
