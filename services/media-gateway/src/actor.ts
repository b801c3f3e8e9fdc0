import { RecentSet, type ActorContext } from '@va/actor';
import { traceFromFields } from '@va/bus';
import {
  channels,
  sessionRequests,
  type AudioFrame,
  type AudioSource,
  type PlayedSegment,
  type RecordedTurn,
  FRAME_MS,
} from '@va/protocol';
import type { Context } from '@va/telemetry';
import { MicReplayRing } from './mic-replay.js';
import { TurnMarks } from './turn-marks.js';
import { ArrivedText, PlayoutBuffer, PlayoutHolds, spokenText } from './playout.js';
import { PLAYING_STATE, PlayingRecord, type PlayingState } from './playing-record.js';
import { STAGE, TurnTrace } from './turn-trace.js';

export { STAGE };

/** How long a resumed session waits for tts to say whether it speaks the answer in flight again. */
const SPEECH_REPLAY_TIMEOUT_MS = 2000;

/** Agent frames a resumed session holds at most while it asks for the answer in flight (10 s of audio). */
const HELD_FRAMES_MAX = 500;

/** Turn ids a session remembers having had (a few are in flight at once). */
const KNOWN_TURNS = 64;

/** Words of the agent's voice as they are played: captions in step with the audio. */
export type HeardListener = (turnId: string, source: AudioSource, text: string) => void;

/**
 * The bus side of one session at the gateway. The transport's clock calls `tick()` every 20 ms with the
 * user's audio; the session publishes it, and returns the agent frame to play now (real-time pacing lives
 * here, so the gateway knows exactly what was heard: each frame carries its words). Each turn's trace is a
 * `TurnTrace`; which turns may play now (previews, barge-in pauses) is `PlayoutHolds`.
 */
export class GatewaySession {
  private seq = 0;
  private readonly buffer = new PlayoutBuffer();
  private readonly holds = new PlayoutHolds();
  private readonly arrived = new ArrivedText();
  /** How far the turn being played has been heard (va_state): what a gateway taking the session up replays. */
  private readonly playing: PlayingRecord;
  /**
   * Resumed after the gateway serving it died: the answer it was playing is unknown here, yet its audio may still
   * come (the sentences tts synthesizes after the death) — taken up as a turn of its own. `known`: turn ids this
   * session has had, so a turn is taken up once and never after it ended.
   */
  private readonly resumed: boolean;
  private readonly known = new RecentSet<string>(KNOWN_TURNS);
  /**
   * Resumed: agent audio of turns unknown here, held until the answer in flight has been asked of tts again (its
   * replay supersedes what tts sent before); then played as it would have been.
   */
  private held: AudioFrame[] | undefined;
  /** The turn whose repeated audio was last reported (one log line per turn). */
  private repeatedTurn: string | undefined;
  /** The user turn being spoken (opened at vad start, bound to a turn id at turn end). */
  private open: TurnTrace | undefined;
  private readonly turns = new Map<string, TurnTrace>();
  readonly records: RecordedTurn[] = [];
  readonly segments: PlayedSegment[] = [];
  private readonly startWall: number;
  private lastActivityMs = 0;
  private latestFirstAudioMs: number | undefined;
  private readonly marks = new TurnMarks();
  /** The newest microphone frames sent, for an stt instance that takes the session over. */
  private readonly recentMic = new MicReplayRing();
  /** Told the words of each agent frame as it is played (the web transport's captions). */
  onHeard: HeardListener | undefined;
  /**
   * The agent's greeting, opened with the session: the microphone frames carry its trace context until the turn
   * detector announces the greeting turn, so every stage's spans of the greeting join its trace.
   */
  private greeting: TurnTrace | undefined;

  constructor(
    private readonly ctx: ActorContext,
    private readonly sampleRate: number,
    opts: {
      greeting?: boolean;
      /** Resumed (another gateway served it until it died): the session clock goes on from this wall time. */
      startWall?: number;
    } = {},
  ) {
    this.startWall = opts.startWall ?? Date.now();
    this.resumed = opts.startWall !== undefined;
    this.playing = new PlayingRecord(ctx.state);
    // The stages' clock runs on across the gap: the first frame is dated now, on the session's clock.
    if (opts.startWall !== undefined) this.seq = Math.max(0, Math.round((Date.now() - opts.startWall) / FRAME_MS));
    if (opts.greeting) this.greeting = new TurnTrace(ctx.sessionId, 0, new Date(this.startWall), 'greeting');
    ctx.subscribe(channels.vad, (v) => (v.kind === 'start' ? this.onSpeechStart(v.atMs) : undefined));
    ctx.subscribe(channels.turn, (t, meta) => {
      if (t.kind === 'preview') {
        this.known.add(t.turnId);
        this.holds.preview(t.turnId);
      } else if (t.kind === 'end') this.onTurnEnd(t.turnId, t.text, t.speechEndMs, meta.context);
      else if (t.kind === 'barge-in') this.pause(t.turnId, t.speechEndMs);
      else if (t.kind === 'agent') this.onAgentTurn(t.turnId, t.speechEndMs);
      else this.resume(t.turnId);
    });
    ctx.onCancel = (turnId) => this.interrupt(turnId);
    ctx.subscribeAudio('out', (f) => this.onAgentAudio(f));
    ctx.serve(sessionRequests.audioReplay, ({ fromMs }) => this.recentMic.replay(fromMs, this.seq, this.sampleRate));
    if (this.resumed) {
      this.held = [];
      void this.replayInFlight();
    }
    // tts has sent every frame of this source: the turn ends once they are played.
    ctx.subscribe(channels.speech, (s) => {
      const turn = this.turns.get(s.turnId);
      const p = turn?.playout ?? this.holds.previewOf(s.turnId);
      p?.complete.add(s.source);
      if (turn) this.maybeFinish(turn);
    });
  }

  /** Wall time of the session clock's zero. */
  get startedAt(): number {
    return this.startWall;
  }

  /** Session clock (ms of audio sent so far). */
  get nowMs(): number {
    return this.seq * FRAME_MS;
  }

  /** Nothing in flight: no user turn open, no agent turn (or greeting) waiting or playing. */
  get idle(): boolean {
    return this.open === undefined && this.greeting === undefined && this.turns.size === 0 && this.buffer.queued === 0;
  }

  /** Session-clock time of the last user speech or agent audio. */
  get lastActivity(): number {
    return this.lastActivityMs;
  }

  /** Session-clock time the latest agent turn's first audio played. */
  get agentTurnStart(): number | undefined {
    return this.latestFirstAudioMs;
  }

  /** One 20 ms step: publish the user's frame, return the agent's frame to play (or undefined: silence). */
  tick(mic: Int16Array): Int16Array | undefined {
    const tsMs = this.nowMs;
    const trace = this.open ?? this.greeting;
    this.ctx.publishAudio(
      'in',
      { samples: mic, sampleRate: this.sampleRate as 16000, seq: this.seq, tsMs },
      trace ? { context: trace.rootContext } : {},
    );
    this.recentMic.add(this.seq, mic);
    this.seq++;
    const frame = this.buffer.next(this.holds.held);
    if (!frame) return undefined;
    const turn = this.turns.get(frame.turnId);
    const p = turn?.playout;
    if (!turn || !p) return undefined;
    if (turn.firstAudioMs === undefined) this.latestFirstAudioMs = tsMs;
    turn.played(frame.source, tsMs);
    p.heard[frame.source] += frame.text;
    this.playing.played(p.turnId, frame.source, frame.textOffset, turn.rootContext);
    p.playedMs += FRAME_MS;
    this.lastActivityMs = tsMs + FRAME_MS;
    this.addSegment(p.turnId, frame.source, tsMs);
    if (frame.text) this.onHeard?.(p.turnId, frame.source, frame.text);
    this.maybeFinish(turn);
    return frame.samples;
  }

  private onAgentAudio(f: AudioFrame): void {
    if (!f.turnId || !f.source) return;
    let turn = this.turns.get(f.turnId);
    if (!turn && !this.holds.previewOf(f.turnId)) {
      if (this.held) {
        if (this.held.length < HELD_FRAMES_MAX) this.held.push(f);
        return;
      }
      turn = this.takeUp(f.turnId);
      if (!turn) return;
    }
    const text = this.arrived.admit(f);
    if (text === undefined) {
      if (this.repeatedTurn !== f.turnId) {
        this.repeatedTurn = f.turnId;
        this.ctx.log.info({ turnId: f.turnId, source: f.source }, 'repeated agent audio dropped (a tts successor)');
      }
      return;
    }
    turn?.arrived();
    this.marks.mark(f.turnId, 'audioReadyMs', this.nowMs);
    if (f.source === 'deep') this.marks.mark(f.turnId, 'answerAudioMs', this.nowMs);
    this.buffer.push({
      turnId: f.turnId,
      source: f.source,
      samples: f.samples,
      text,
      ...(f.textOffset !== undefined ? { textOffset: f.textOffset } : {}),
    });
  }

  /** After a resume: audio of an answer the dead gateway was playing — played as a turn here. */
  private takeUp(turnId: string, parent?: Context): TurnTrace | undefined {
    if (!this.resumed || this.known.has(turnId)) return undefined;
    this.known.add(turnId);
    const at = new Date(this.startWall + this.nowMs);
    const turn = new TurnTrace(this.ctx.sessionId, this.nowMs, at, 'taken-over', parent);
    turn.commit(turnId, '', this.nowMs, this.holds.commit(turnId));
    this.turns.set(turnId, turn);
    this.ctx.log.info({ turnId }, 'answer in flight taken up after the resume');
    return turn;
  }

  /**
   * Resumed: the turn the dead gateway was playing (its `playing` record), asked of tts again from what was heard
   * of it, and taken up here — in the turn's own trace. Nothing comes when tts has moved on (a newer turn).
   */
  private async replayInFlight(): Promise<void> {
    let replayed: string | undefined;
    try {
      const saved = await this.ctx.state.get<PlayingState>(PLAYING_STATE).catch(() => undefined);
      if (!saved || this.known.has(saved.turnId)) return;
      const turn = this.takeUp(saved.turnId, traceFromFields(saved.trace));
      if (!turn) return;
      this.arrived.seed(saved.turnId, saved.heardTo);
      const reply = await this.ctx
        .request(
          sessionRequests.speechReplay,
          { turnId: saved.turnId, from: saved.heardTo },
          { timeoutMs: SPEECH_REPLAY_TIMEOUT_MS, context: turn.rootContext },
        )
        .catch((err: unknown) => {
          this.ctx.log.warn({ err: String(err), turnId: saved.turnId }, 'the answer in flight was not asked again');
          return { replaying: false };
        });
      this.ctx.log.info({ turnId: saved.turnId, heardTo: saved.heardTo, ...reply }, 'answer in flight asked again');
      if (reply.replaying) {
        // tts speaks it again from what was heard: what it sent before that is superseded.
        replayed = saved.turnId;
        return;
      }
      // tts has moved on: what still comes of the turn is played past what was heard; with nothing, it is over.
      if (this.held?.some((f) => f.turnId === saved.turnId)) return;
      this.turns.delete(saved.turnId);
      turn.abandon();
      this.ctx.state.drop(PLAYING_STATE);
    } finally {
      const held = this.held ?? [];
      this.held = undefined;
      for (const f of held) if (f.turnId !== replayed) this.onAgentAudio(f);
    }
  }

  /** Played stretches of agent audio: a frame right after the last of its turn and source extends it. */
  private addSegment(turnId: string, source: AudioSource, atMs: number): void {
    const last = this.segments[this.segments.length - 1];
    if (last && last.turnId === turnId && last.source === source && last.endMs === atMs) last.endMs += FRAME_MS;
    else this.segments.push({ turnId, source, startMs: atMs, endMs: atMs + FRAME_MS });
  }

  private onSpeechStart(atMs: number, parent?: Context): void {
    this.lastActivityMs = Math.max(this.lastActivityMs, atMs);
    if (this.open) return; // the user goes on after a pause: same turn
    this.open = new TurnTrace(this.ctx.sessionId, atMs, new Date(this.startWall + atMs), 'user', parent);
  }

  /** Drops a preview that will not be committed (cancelled, or superseded by a different turn). */
  private dropPreview(turnId: string): void {
    if (!this.holds.drop(turnId)) return;
    this.marks.forget(turnId);
    this.buffer.flush(turnId);
  }

  /** Barge-in: the user speaks over this turn. Stop playing it now; keep what is unplayed until words decide. */
  private pause(turnId: string, userSpeechStartMs: number): void {
    const turn = this.turns.get(turnId);
    if (!turn || turn.ended) return;
    this.holds.pause(turnId);
    turn.bargedIn(userSpeechStartMs);
  }

  /** A false interruption: play on from the first unplayed frame, so nothing is heard twice. */
  private resume(turnId: string): void {
    const turn = this.turns.get(turnId);
    if (turn && this.holds.resume(turnId)) turn.resumed();
  }

  private onTurnEnd(turnId: string, text: string, speechEndMs: number, trace: Context): void {
    // A turn end without a vad start we saw (the gateway restarted, or a final replaced a turn ended on its
    // partial): open its root now, in the trace the turn detector sent it in.
    if (!this.open) this.onSpeechStart(speechEndMs, trace);
    const turn = this.open!;
    this.open = undefined;
    this.marks.mark(turnId, 'turnEndMs', this.nowMs);
    // A committed preview keeps what it already has (audio waiting in the buffer); other previews are stale.
    this.known.add(turnId);
    turn.commit(turnId, text, speechEndMs, this.holds.commit(turnId));
    for (const stale of this.holds.previewIds) this.dropPreview(stale);
    this.turns.set(turnId, turn);
    this.lastActivityMs = Math.max(this.lastActivityMs, speechEndMs);
  }

  /** The agent speaks first (a greeting): a turn of its own; a user turn being spoken meanwhile stays open. */
  private onAgentTurn(turnId: string, atMs: number): void {
    const turn = this.greeting ?? new TurnTrace(this.ctx.sessionId, atMs, new Date(this.startWall + atMs), 'greeting');
    this.greeting = undefined;
    this.marks.mark(turnId, 'turnEndMs', this.nowMs);
    this.known.add(turnId);
    turn.commit(turnId, '', atMs, this.holds.commit(turnId));
    this.turns.set(turnId, turn);
  }

  /** Barge-in or cancel: stop playing this turn within one frame and report what was heard. */
  private interrupt(turnId: string): void {
    this.dropPreview(turnId);
    const turn = this.turns.get(turnId);
    if (!turn) return;
    this.buffer.flush(turnId);
    this.holds.resume(turnId);
    turn.stopped();
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
    this.turns.delete(p.turnId);
    this.playing.ended(p.turnId);
    const heard = spokenText(p);
    this.ctx.publish(
      channels.playout,
      { turnId: p.turnId, playedMs: p.playedMs, spokenText: heard, done: true, interrupted },
      { context: turn.rootContext },
    );
    const timeline = this.marks.timeline(p.turnId, turn.speechEndMs ?? turn.speechStartMs, turn.firstAudioMs);
    this.records.push(turn.end(interrupted, heard, timeline));
    this.ctx.log.info({ turnId: p.turnId, e2eMs: turn.e2eMs, playedMs: p.playedMs, interrupted }, 'turn played');
    this.ctx.endTurn(p.turnId);
  }

  /** Ends whatever is still open (session closing). */
  close(): void {
    this.playing.stop();
    for (const turnId of this.holds.previewIds) this.dropPreview(turnId);
    for (const turn of [...this.turns.values()]) this.finish(turn, true);
    this.open?.abandon();
    this.open = undefined;
    this.greeting?.abandon();
    this.greeting = undefined;
  }
}
