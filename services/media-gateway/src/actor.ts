import type { ActorContext } from '@va/actor';
import { dither } from '@va/audio';
import {
  channels,
  sessionRequests,
  type AudioSource,
  type PlayedSegment,
  type RecordedTurn,
  FRAME_MS,
} from '@va/protocol';
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
import { MicReplayRing } from './mic-replay.js';
import { TurnMarks } from './turn-marks.js';
import { newTurnPlayout, PlayoutBuffer, spokenText, type TurnPlayout } from './playout.js';

export const STAGE = 'media-gateway';

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
  /** User speech start of the latest barge-in on this turn (session clock). */
  bargeInAtMs?: number;
  /** End of the last agent frame of this turn played (session clock). */
  lastAudioMs?: number;
  /** End of the opener's last frame played, and whether the answer has started (session clock). */
  openerEndMs?: number;
  answerStarted?: boolean;
  fillerPlayed?: boolean;
  resumes: number;
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
  /** Preview turns (preemptive generation): their audio is kept, unplayed, until the turn is committed. */
  private readonly previews = new Map<string, TurnPlayout>();
  /** Turns whose frames must not play now: previews, and turns paused by a barge-in. */
  private readonly held = new Set<string>();
  readonly records: RecordedTurn[] = [];
  readonly segments: PlayedSegment[] = [];
  private readonly userTexts = new Map<string, string>();
  private readonly startWall: number;
  private lastActivityMs = 0;
  private latestFirstAudioMs: number | undefined;
  private readonly marks = new TurnMarks();
  /** The newest microphone frames sent, for an stt instance that takes the session over. */
  private readonly recentMic = new MicReplayRing();

  constructor(
    private readonly ctx: ActorContext,
    private readonly sampleRate: number,
  ) {
    this.startWall = Date.now();
    ctx.subscribe(channels.vad, (v) => (v.kind === 'start' ? this.onSpeechStart(v.atMs) : undefined));
    ctx.subscribe(channels.turn, (t) => {
      if (t.kind === 'preview') this.onPreview(t.turnId);
      else if (t.kind === 'end') this.onTurnEnd(t.turnId, t.text, t.speechEndMs);
      else if (t.kind === 'barge-in') this.pause(t.turnId, t.speechEndMs);
      else this.resume(t.turnId);
    });
    ctx.onCancel = (turnId) => this.interrupt(turnId);
    ctx.subscribeAudio('out', (f) => {
      if (!f.turnId || !f.source) return;
      const turn = this.turns.get(f.turnId);
      if (!turn && !this.previews.has(f.turnId)) return;
      if (turn) turn.firstArrival ??= performance.timeOrigin + performance.now();
      this.marks.mark(f.turnId, 'audioReadyMs', this.nowMs);
      this.buffer.push({ turnId: f.turnId, source: f.source, samples: f.samples, textOffset: f.textOffset ?? 0 });
    });
    const onReply = (source: AudioSource) => (r: { turnId: string; delta: string }) => {
      if (r.delta) this.marks.mark(r.turnId, source === 'fast' ? 'openerTextMs' : 'answerTextMs', this.nowMs);
      const p = this.playoutOf(r.turnId);
      if (p && !p.complete.has(source)) p.texts[source] += r.delta;
    };
    ctx.subscribe(channels.replyFast, onReply('fast'));
    ctx.subscribe(channels.replyDeep, onReply('deep'));
    ctx.serve(sessionRequests.audioReplay, ({ fromMs }) => this.recentMic.replay(fromMs, this.seq, this.sampleRate));
    ctx.subscribe(channels.speech, (s) => {
      const p = this.playoutOf(s.turnId);
      if (!p) return;
      p.texts[s.source] = s.text;
      p.complete.add(s.source);
      const turn = this.turns.get(s.turnId);
      if (turn) this.maybeFinish(turn);
    });
  }

  private playoutOf(turnId: string): TurnPlayout | undefined {
    return this.turns.get(turnId)?.playout ?? this.previews.get(turnId);
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

  /** Session-clock time the latest agent turn's first audio played. */
  get agentTurnStart(): number | undefined {
    return this.latestFirstAudioMs;
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
    this.recentMic.add(this.seq, mic);
    this.seq++;
    const frame = this.buffer.next(this.held);
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
      this.latestFirstAudioMs = atMs;
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
        recordLatency(METRIC.e2e, e2e, { span: turn.root, attributes: { [ATTR.stage]: STAGE } });
      }
    }
    if (source === 'fast') turn.openerEndMs = atMs + FRAME_MS;
    if (source === 'filler' && !turn.fillerPlayed) {
      turn.fillerPlayed = true;
      turn.root.setAttribute(ATTR.filler, true);
      turn.root.addEvent(EVENT.filler);
    }
    if (source === 'deep' && !turn.answerStarted) {
      turn.answerStarted = true;
      // The handoff: how long the user waited between the opener's end and the answer (a filler counts as waiting).
      if (turn.openerEndMs !== undefined) {
        const gap = atMs - turn.openerEndMs;
        turn.root.setAttribute(ATTR.answerGapMs, gap);
        recordLatency(METRIC.answerGap, gap, { span: turn.root, attributes: { [ATTR.stage]: STAGE } });
      }
    }
    p.offsets[source] = Math.max(p.offsets[source], textOffset);
    p.playedMs += FRAME_MS;
    turn.lastAudioMs = atMs + FRAME_MS;
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
    this.open = { root, rootContext: contextOf(root), speechStartMs: atMs, resumes: 0, ended: false };
  }

  /** Preemptive generation: collect the preview's text and audio, play none of it until `end` commits it. */
  private onPreview(turnId: string): void {
    this.previews.set(turnId, newTurnPlayout(turnId));
    this.held.add(turnId);
  }

  /** Drops a preview that will not be committed (cancelled, or superseded by a different turn). */
  private dropPreview(turnId: string): void {
    if (!this.previews.delete(turnId)) return;
    this.marks.forget(turnId);
    this.held.delete(turnId);
    this.buffer.flush(turnId);
  }

  /** Barge-in: the user speaks over this turn. Stop playing it now; keep what is unplayed until words decide. */
  private pause(turnId: string, userSpeechStartMs: number): void {
    const turn = this.turns.get(turnId);
    if (!turn || turn.ended) return;
    turn.bargeInAtMs = userSpeechStartMs;
    this.held.add(turnId);
    turn.root.addEvent(EVENT.bargeIn, { [ATTR.turnId]: turnId });
  }

  /** A false interruption: play on from the first unplayed frame, so nothing is heard twice. */
  private resume(turnId: string): void {
    const turn = this.turns.get(turnId);
    if (!turn || !this.held.delete(turnId)) return;
    turn.resumes++;
    turn.bargeInAtMs = undefined;
    turn.root.addEvent(EVENT.resume, { [ATTR.turnId]: turnId });
  }

  private onTurnEnd(turnId: string, text: string, speechEndMs: number): void {
    // A turn end without a vad start we saw (e.g. the gateway restarted): open its root now.
    if (!this.open) this.onSpeechStart(speechEndMs);
    const turn = this.open!;
    this.open = undefined;
    turn.turnId = turnId;
    turn.speechEndMs = speechEndMs;
    this.marks.mark(turnId, 'turnEndMs', this.nowMs);
    // A committed preview keeps what it already has (text, audio waiting in the buffer); other previews are stale.
    turn.playout = this.previews.get(turnId) ?? newTurnPlayout(turnId);
    this.previews.delete(turnId);
    this.held.delete(turnId);
    for (const stale of [...this.previews.keys()]) this.dropPreview(stale);
    turn.root.setAttribute(ATTR.turnId, turnId);
    if (traceText()) turn.root.setAttribute(ATTR.text, text);
    this.userTexts.set(turnId, text);
    this.turns.set(turnId, turn);
    this.lastActivityMs = Math.max(this.lastActivityMs, speechEndMs);
  }

  /** Barge-in or cancel: stop playing this turn within one frame and report what was heard. */
  private interrupt(turnId: string): void {
    this.dropPreview(turnId);
    const turn = this.turns.get(turnId);
    if (!turn) return;
    this.buffer.flush(turnId);
    this.held.delete(turnId);
    if (turn.bargeInAtMs !== undefined && turn.lastAudioMs !== undefined) {
      turn.root.setAttribute(ATTR.bargeInStopMs, Math.max(0, turn.lastAudioMs - turn.bargeInAtMs));
    }
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
      bargeInAtMs: interrupted ? (turn.bargeInAtMs ?? null) : null,
      lastAudioMs: turn.lastAudioMs ?? null,
      resumes: turn.resumes,
      timeline: this.marks.timeline(p.turnId, turn.speechEndMs ?? turn.speechStartMs, turn.firstAudioMs),
    });
    counter(METRIC.turns).add(1, { [ATTR.stage]: STAGE, [ATTR.interrupted]: interrupted });
    this.ctx.log.info({ turnId: p.turnId, e2eMs: e2e, playedMs: p.playedMs, interrupted }, 'turn played');
    this.ctx.endTurn(p.turnId);
  }

  /** Ends whatever is still open (session closing). */
  close(): void {
    for (const turnId of [...this.previews.keys()]) this.dropPreview(turnId);
    for (const turn of [...this.turns.values()]) this.finish(turn, true);
    if (this.open) {
      this.open.root.setAttribute(ATTR.interrupted, true);
      this.open.root.end();
      this.open = undefined;
    }
  }
}

/** Distinct frames of comfort noise made once per frame size, handed out in turn (a copy each). */
const SILENCE_BANK = 64;
const silenceBanks = new Map<number, Int16Array[]>();

/**
 * Comfort noise for the microphone when the transport has nothing: digital zero upsets recognisers. The frame is
 * shared (one of a bank made once): read it, never write to it.
 */
export function micSilence(samples: number, seed: number): Int16Array {
  let bank = silenceBanks.get(samples);
  if (!bank) {
    bank = Array.from({ length: SILENCE_BANK }, (_, i) => dither(new Int16Array(samples), 6, i + 1));
    silenceBanks.set(samples, bank);
  }
  return bank[Math.abs(seed) % SILENCE_BANK]!;
}
