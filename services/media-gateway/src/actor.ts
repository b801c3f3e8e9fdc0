import type { ActorContext } from '@va/actor';
import { dither } from '@va/audio';
import { channels, type AudioSource, type PlayedSegment, type RecordedTurn } from '@va/protocol';
import {
  ATTR,
  contextOf,
  context as otelContext,
  histogram,
  METRIC,
  SPAN,
  startStageSpan,
  traceText,
  type Context,
  type Span,
} from '@va/telemetry';
import { newTurnPlayout, PlayoutBuffer, spokenText, type TurnPlayout } from './playout.js';

export const STAGE = 'media-gateway';
export const FRAME_MS = 20;

/** One user turn and the agent's answer to it: the root span of its trace and what was played. */
interface TurnTrace {
  root: Span;
  rootContext: Context;
  speechStartMs: number;
  speechEndMs?: number;
  turnId?: string;
  playout?: TurnPlayout;
  playSpan?: Span;
  firstAudioMs?: number;
  /** Wall time the turn's first agent frame reached the gateway. */
  firstArrival?: number;
  ended: boolean;
}

/**
 * The bus side of one session at the gateway. The transport's clock calls `tick()` every 20 ms with the
 * user's audio; the session publishes it, and returns the agent frame to play now (real-time pacing lives
 * here, so the gateway knows exactly what was heard). It opens each turn's root span when the user starts
 * speaking and ends it when the agent's answer has been played or interrupted.
 */
export class GatewaySession {
  private seq = 0;
  private readonly buffer = new PlayoutBuffer();
  /** The user turn being spoken (opened at vad start, bound to a turn id at turn end). */
  private open: TurnTrace | undefined;
  private readonly turns = new Map<string, TurnTrace>();
  readonly records: RecordedTurn[] = [];
  readonly segments: PlayedSegment[] = [];
  private readonly userTexts = new Map<string, string>();
  private readonly startWall: number;
  private lastActivityMs = 0;

  constructor(
    private readonly ctx: ActorContext,
    private readonly sampleRate: number,
  ) {
    this.startWall = Date.now();
    ctx.subscribe(channels.vad, (v) => (v.kind === 'start' ? this.onSpeechStart(v.atMs) : undefined));
    ctx.subscribe(channels.turn, (t) => {
      if (t.kind === 'end') this.onTurnEnd(t.turnId, t.text, t.speechEndMs);
      else if (t.kind === 'barge-in') this.interrupt(t.turnId);
    });
    ctx.onCancel = (turnId) => this.interrupt(turnId);
    ctx.subscribeAudio('out', (f) => {
      const turn = f.turnId ? this.turns.get(f.turnId) : undefined;
      if (!f.turnId || !f.source || !turn) return;
      turn.firstArrival ??= performance.timeOrigin + performance.now();
      this.buffer.push({ turnId: f.turnId, source: f.source, samples: f.samples, textOffset: f.textOffset ?? 0 });
    });
    const onReply = (source: AudioSource) => (r: { turnId: string; delta: string }) => {
      const p = this.turns.get(r.turnId)?.playout;
      if (p && !p.complete.has(source)) p.texts[source] += r.delta;
    };
    ctx.subscribe(channels.replyFast, onReply('fast'));
    ctx.subscribe(channels.replyDeep, onReply('deep'));
    ctx.subscribe(channels.speech, (s) => {
      const turn = this.turns.get(s.turnId);
      if (!turn?.playout) return;
      turn.playout.texts[s.source] = s.text;
      turn.playout.complete.add(s.source);
      this.maybeFinish(turn);
    });
  }

  /** Session clock (ms of audio sent so far). */
  get nowMs(): number {
    return this.seq * FRAME_MS;
  }

  /** Nothing in flight: no user turn open, no agent turn waiting or playing. */
  get idle(): boolean {
    return this.open === undefined && this.turns.size === 0 && this.buffer.queued === 0;
  }

  /** Session-clock time of the last user speech or agent audio. */
  get lastActivity(): number {
    return this.lastActivityMs;
  }

  private wallAt(audioMs: number): Date {
    return new Date(this.startWall + audioMs);
  }

  /** One 20 ms step: publish the user's frame, return the agent's frame to play (or undefined: silence). */
  tick(mic: Int16Array): Int16Array | undefined {
    const tsMs = this.nowMs;
    this.ctx.publishAudio(
      'in',
      { samples: mic, sampleRate: this.sampleRate as 16000, seq: this.seq, tsMs },
      this.open ? { context: this.open.rootContext } : {},
    );
    this.seq++;
    const frame = this.buffer.next();
    if (!frame) return undefined;
    const turn = this.turns.get(frame.turnId);
    if (!turn?.playout) return undefined;
    this.played(turn, turn.playout, frame.source, frame.textOffset, tsMs);
    this.maybeFinish(turn);
    return frame.samples;
  }

  private played(turn: TurnTrace, p: TurnPlayout, source: AudioSource, textOffset: number, atMs: number): void {
    if (turn.firstAudioMs === undefined) {
      turn.firstAudioMs = atMs;
      turn.playSpan = startStageSpan(SPAN.gatewayPlayout, {
        parent: turn.rootContext,
        sessionId: this.ctx.sessionId,
        turnId: p.turnId,
        stage: STAGE,
        attributes: {
          [ATTR.firstSource]: source,
          [ATTR.bufferWaitMs]:
            turn.firstArrival === undefined
              ? 0
              : Math.round((performance.timeOrigin + performance.now() - turn.firstArrival) * 10) / 10,
        },
      });
      if (turn.speechEndMs !== undefined) {
        const e2e = atMs - turn.speechEndMs;
        turn.root.setAttribute(ATTR.e2eMs, e2e);
        histogram(METRIC.e2e).record(e2e, { [ATTR.stage]: STAGE });
      }
    }
    p.offsets[source] = Math.max(p.offsets[source], textOffset);
    p.playedMs += FRAME_MS;
    this.lastActivityMs = atMs + FRAME_MS;
    const last = this.segments[this.segments.length - 1];
    if (last && last.turnId === p.turnId && last.source === source && last.endMs === atMs) last.endMs += FRAME_MS;
    else this.segments.push({ turnId: p.turnId, source, startMs: atMs, endMs: atMs + FRAME_MS });
  }

  private onSpeechStart(atMs: number): void {
    this.lastActivityMs = Math.max(this.lastActivityMs, atMs);
    if (this.open) return; // the user goes on after a pause: same turn
    const root = startStageSpan(SPAN.turn, {
      parent: otelContext.active(),
      sessionId: this.ctx.sessionId,
      stage: STAGE,
      startTime: this.wallAt(atMs),
    });
    this.open = { root, rootContext: contextOf(root), speechStartMs: atMs, ended: false };
  }

  private onTurnEnd(turnId: string, text: string, speechEndMs: number): void {
    // A turn end without a vad start we saw (e.g. the gateway restarted): open its root now.
    if (!this.open) this.onSpeechStart(speechEndMs);
    const turn = this.open!;
    this.open = undefined;
    turn.turnId = turnId;
    turn.speechEndMs = speechEndMs;
    turn.playout = newTurnPlayout(turnId);
    turn.root.setAttribute(ATTR.turnId, turnId);
    if (traceText()) turn.root.setAttribute(ATTR.text, text);
    this.userTexts.set(turnId, text);
    this.turns.set(turnId, turn);
    this.lastActivityMs = Math.max(this.lastActivityMs, speechEndMs);
  }

  /** Barge-in or cancel: stop playing this turn within one frame and report what was heard. */
  private interrupt(turnId: string): void {
    const turn = this.turns.get(turnId);
    if (!turn) return;
    this.buffer.flush(turnId);
    this.finish(turn, true);
  }

  private maybeFinish(turn: TurnTrace): void {
    const p = turn.playout;
    if (!p || turn.ended || !p.complete.has('deep') || this.buffer.hasFramesOf(p.turnId)) return;
    this.finish(turn, false);
  }

  private finish(turn: TurnTrace, interrupted: boolean): void {
    const p = turn.playout;
    if (!p || turn.ended) return;
    turn.ended = true;
    this.turns.delete(p.turnId);
    const heard = spokenText(p);
    this.ctx.publish(
      channels.playout,
      { turnId: p.turnId, playedMs: p.playedMs, spokenText: heard, done: true, interrupted },
      { context: turn.rootContext },
    );
    for (const span of [turn.playSpan, turn.root]) {
      span?.setAttribute(ATTR.interrupted, interrupted);
      span?.end();
    }
    const e2e =
      turn.firstAudioMs !== undefined && turn.speechEndMs !== undefined ? turn.firstAudioMs - turn.speechEndMs : null;
    this.records.push({
      turnId: p.turnId,
      traceId: turn.root.spanContext().traceId,
      userText: this.userTexts.get(p.turnId) ?? '',
      speechStartMs: turn.speechStartMs,
      speechEndMs: turn.speechEndMs ?? turn.speechStartMs,
      firstAudioMs: turn.firstAudioMs ?? null,
      e2eMs: e2e,
      spokenText: heard,
      interrupted,
    });
    this.ctx.log.info({ turnId: p.turnId, e2eMs: e2e, playedMs: p.playedMs, interrupted }, 'turn played');
    this.ctx.endTurn(p.turnId);
  }

  /** Ends whatever is still open (session closing). */
  close(): void {
    for (const turn of [...this.turns.values()]) this.finish(turn, true);
    if (this.open) {
      this.open.root.setAttribute(ATTR.interrupted, true);
      this.open.root.end();
      this.open = undefined;
    }
  }
}

/** Comfort noise for the microphone when the transport has nothing: digital zero upsets recognisers. */
export function micSilence(samples: number, seed: number): Int16Array {
  return dither(new Int16Array(samples), 6, seed);
}
