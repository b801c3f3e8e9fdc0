import type { AudioSource, RecordedTurn, TurnTimeline } from '@va/protocol';
import { FRAME_MS } from '@va/protocol';
import {
  ATTR,
  contextOf,
  counter,
  EVENT,
  context as otelContext,
  METRIC,
  recordLatency,
  SPAN,
  startStageSpan,
  traceText,
  type Context,
  type Span,
} from '@va/telemetry';
import type { TurnPlayout } from './playout.js';

export const STAGE = 'media-gateway';

/** Wall time now, ms, on the monotonic clock. */
const wallNow = () => performance.timeOrigin + performance.now();

/**
 * One user turn and the agent's answer to it, as its trace tells it: the root span (opened when the user starts
 * speaking, ended when the answer has been played or interrupted), the playout span, the voice-to-voice and
 * answer-gap latencies, and the turn's record.
 */
export class TurnTrace {
  readonly root: Span;
  readonly rootContext: Context;
  turnId: string | undefined;
  userText = '';
  speechEndMs: number | undefined;
  /** What was played of the agent's answer (set when the turn is committed). */
  playout: TurnPlayout | undefined;
  /** Session-clock time of the first agent frame played, and the end of the last one. */
  firstAudioMs: number | undefined;
  lastAudioMs: number | undefined;
  /** User speech start of the latest barge-in on this turn (session clock). */
  bargeInAtMs: number | undefined;
  resumes = 0;
  ended = false;
  private playSpan: Span | undefined;
  /** Wall time the turn's first agent frame reached the gateway. */
  private firstArrival: number | undefined;
  /** End of the opener's last frame played (session clock). */
  private openerEndMs: number | undefined;
  private answerStarted = false;
  private fillerPlayed = false;

  constructor(
    private readonly sessionId: string,
    readonly speechStartMs: number,
    startTime: Date,
    /**
     * `greeting`: the agent speaks first. `taken-over`: an answer another gateway was playing when it died, taken
     * up by this one after the session's resume. Neither has user speech seen here: no voice-to-voice latency.
     */
    readonly kind: 'user' | 'greeting' | 'taken-over' = 'user',
    /** The trace the turn belongs to when it is already known (a turn end with no speech start seen). */
    parent: Context = otelContext.active(),
  ) {
    this.root = startStageSpan(SPAN.turn, { parent, sessionId, stage: STAGE, startTime });
    if (kind === 'greeting') this.root.setAttribute(ATTR.greeting, true);
    if (kind === 'taken-over') this.root.setAttribute(ATTR.takenOver, true);
    this.rootContext = contextOf(this.root);
  }

  /** The turn detector ended the user's turn: it has an id and words now. */
  commit(turnId: string, text: string, speechEndMs: number, playout: TurnPlayout): void {
    this.turnId = turnId;
    this.userText = text;
    this.speechEndMs = speechEndMs;
    this.playout = playout;
    this.root.setAttribute(ATTR.turnId, turnId);
    if (traceText()) this.root.setAttribute(ATTR.text, text);
  }

  /** An agent frame of this turn reached the gateway. */
  arrived(): void {
    this.firstArrival ??= wallNow();
  }

  /** A frame of `source` starts playing at `atMs` (session clock): the latencies are measured off these. */
  played(source: AudioSource, atMs: number): void {
    if (this.firstAudioMs === undefined) this.firstPlayed(source, atMs);
    if (source === 'fast') this.openerEndMs = atMs + FRAME_MS;
    if (source === 'filler' && !this.fillerPlayed) {
      this.fillerPlayed = true;
      this.root.setAttribute(ATTR.filler, true);
      this.root.addEvent(EVENT.filler);
    }
    if (source === 'deep' && !this.answerStarted) {
      this.answerStarted = true;
      // The handoff: how long the user waited between the opener's end and the answer (a filler counts as waiting).
      if (this.openerEndMs !== undefined) {
        const gap = atMs - this.openerEndMs;
        this.root.setAttribute(ATTR.answerGapMs, gap);
        recordLatency(METRIC.answerGap, gap, { span: this.root, attributes: { [ATTR.stage]: STAGE } });
      }
    }
    this.lastAudioMs = atMs + FRAME_MS;
  }

  private firstPlayed(source: AudioSource, atMs: number): void {
    this.firstAudioMs = atMs;
    this.playSpan = startStageSpan(SPAN.gatewayPlayout, {
      parent: this.rootContext,
      sessionId: this.sessionId,
      turnId: this.turnId,
      stage: STAGE,
      attributes: {
        [ATTR.firstSource]: source,
        [ATTR.bufferWaitMs]:
          this.firstArrival === undefined ? 0 : Math.round((wallNow() - this.firstArrival) * 10) / 10,
      },
    });
    if (this.speechEndMs !== undefined && this.kind === 'user') {
      const e2e = atMs - this.speechEndMs;
      this.root.setAttribute(ATTR.e2eMs, e2e);
      recordLatency(METRIC.e2e, e2e, { span: this.root, attributes: { [ATTR.stage]: STAGE } });
    }
  }

  /** The user speaks over the answer (session-clock start of their speech). */
  bargedIn(userSpeechStartMs: number): void {
    this.bargeInAtMs = userSpeechStartMs;
    this.root.addEvent(EVENT.bargeIn, { [ATTR.turnId]: this.turnId });
  }

  /** A false interruption: the answer plays on. */
  resumed(): void {
    this.resumes++;
    this.bargeInAtMs = undefined;
    this.root.addEvent(EVENT.resume, { [ATTR.turnId]: this.turnId });
  }

  /** The answer was stopped for a barge-in: how long the agent went on talking over the user. */
  stopped(): void {
    if (this.bargeInAtMs !== undefined && this.lastAudioMs !== undefined) {
      this.root.setAttribute(ATTR.bargeInStopMs, Math.max(0, this.lastAudioMs - this.bargeInAtMs));
    }
  }

  get e2eMs(): number | null {
    return this.firstAudioMs !== undefined && this.speechEndMs !== undefined && this.kind === 'user'
      ? this.firstAudioMs - this.speechEndMs
      : null;
  }

  /** Ends the turn's spans and counts it; returns its record (what was heard, `spokenText`, and its timeline). */
  end(interrupted: boolean, spokenText: string, timeline: TurnTimeline): RecordedTurn {
    this.ended = true;
    for (const span of [this.playSpan, this.root]) {
      span?.setAttribute(ATTR.interrupted, interrupted);
      span?.end();
    }
    counter(METRIC.turns).add(1, { [ATTR.stage]: STAGE, [ATTR.interrupted]: interrupted });
    return {
      turnId: this.turnId ?? '',
      traceId: this.root.spanContext().traceId,
      userText: this.userText,
      speechStartMs: this.speechStartMs,
      speechEndMs: this.speechEndMs ?? this.speechStartMs,
      firstAudioMs: this.firstAudioMs ?? null,
      e2eMs: this.e2eMs,
      spokenText,
      interrupted,
      bargeInAtMs: interrupted ? (this.bargeInAtMs ?? null) : null,
      lastAudioMs: this.lastAudioMs ?? null,
      resumes: this.resumes,
      timeline,
    };
  }

  /** A user turn still open when the session closes: its root ends unanswered. */
  abandon(): void {
    this.root.setAttribute(ATTR.interrupted, true);
    this.root.end();
  }
}
