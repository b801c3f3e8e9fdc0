import { FrameClock } from '@va/audio';
import { CANCEL_REASON, FRAME_MS, type Transcript } from '@va/protocol';
import { preciseNow } from '@va/telemetry';
import { heuristicEou, SOUNDS_FINISHED, type EndOfUtteranceModel, type SpeechTail } from '@va/providers';
import { endpointDelayMs, type EndpointingOptions } from './endpointing.js';
import { AgentSide } from './agent-side.js';
import { RecentAudio } from './recent-audio.js';
import { RESUMED_MARGIN_MS, UserWords } from './user-words.js';
import {
  newTurnId,
  sameWords,
  wordCount,
  type AgentState,
  type HeardFrame,
  type TurnState,
  type TurnTakingEffects,
  type UserState,
} from './turn-state.js';

export * from './turn-state.js';

/**
 * Words scoring below this sound unfinished: no preview for them (the early request would mostly be wasted), and
 * if their turn was ended anyway (`maxDelayMs`), speech right after it continues it.
 */
export const PREVIEW_MIN_SCORE = SOUNDS_FINISHED;
/** Between frames, quiet may be assumed for about one frame; after this long without frames, the input stopped. */
const HEARD_AHEAD_MS = FRAME_MS;
const INPUT_STALL_MS = 250;
/** Extra wait past `maxDelayMs` while the recogniser has not yet heard the end of the speech. */
const STT_LAG_GRACE_MS = 3_000;

/**
 * One session's turn-taking: VAD start/end from the audio, end of turn from how long the user has been quiet
 * against how finished their words sound, and barge-in when the user speaks over the agent's reply. Two state
 * machines side by side — the user's (`listening → speaking → judging → listening`) and the agent's
 * (`idle → speaking ↔ barged-in → idle`) — driven by frames, transcripts, playout and its own timers (wall clock:
 * `Date.now`/`setTimeout`, so a test drives it with fake timers). No I/O: what it decides goes to `effects`.
 */
export class TurnTaking {
  user: UserState = { phase: 'listening' };
  /** Audio clock → wall clock; frames arrive in real time, so the newest one anchors both. */
  readonly clock = new FrameClock();
  private speechStartMs = 0;
  /** The words of the user turn being collected. */
  private readonly words: UserWords;
  private readonly agentSide: AgentSide;
  /** Speech end of the last turn emitted: transcripts of audio before it belong to that turn. */
  private emittedUpToMs = -1;
  private lastEmitted: TurnState['lastEmitted'];
  /** The preview sent for the speech being judged (preemptive generation), until it is committed or cancelled. */
  private preview: TurnState['preview'];
  /** Audio time of the first frame of the current run of speech frames (before the VAD confirms it). */
  private speechRunStartMs: number | undefined;
  /** Baseline mode only: wall time of the VAD's confirmed end. */
  private vadEndWall = 0;
  /** Audio time of the first frame heard: words from before it were spoken before this instance took over. */
  private firstHeardMs: number | undefined;
  private decideTimer: NodeJS.Timeout | undefined;
  /** The microphone's latest audio, and the speech before the pause being judged (what a listening model reads). */
  private readonly audio = new RecentAudio();
  private pauseSpeech: SpeechTail | undefined;

  constructor(
    private readonly opts: EndpointingOptions,
    private readonly eou: EndOfUtteranceModel,
    private readonly effects: TurnTakingEffects,
    saved?: TurnState,
  ) {
    this.words = new UserWords(saved);
    this.agentSide = new AgentSide(
      opts,
      effects,
      () => this.clock.latestMs,
      (turnId, atWall) => this.bargeInCommitted(turnId, atWall),
    );
    if (!saved) return;
    this.emittedUpToMs = saved.emittedUpToMs;
    if (saved.agentTurn) this.agentSide.speaks(saved.agentTurn);
    this.lastEmitted = saved.lastEmitted;
    this.preview = saved.preview;
  }

  /** The agent's side: idle, speaking or barged-in. */
  get agent(): AgentState {
    return this.agentSide.state;
  }

  /** The agent turn a user could barge in on. */
  get agentTurn(): string | undefined {
    return this.agentSide.turnId;
  }

  /** Where a new owner asks stt to replay finals from. */
  get transcriptsAfterMs(): number {
    return Math.max(this.emittedUpToMs, this.words.lastFinalEndMs);
  }

  get lastFinalMs(): number {
    return this.words.lastFinalEndMs;
  }

  /** The user's words of the turn being collected, at most what one turn message may carry (the newest). */
  get text(): string {
    return this.words.text;
  }

  get state(): TurnState {
    const state: TurnState = {
      emittedUpToMs: this.emittedUpToMs,
      finals: this.words.finals,
      lastFinalEndMs: this.words.lastFinalEndMs,
    };
    if (this.agentTurn) state.agentTurn = this.agentTurn;
    if (this.lastEmitted) state.lastEmitted = this.lastEmitted;
    if (this.preview) state.preview = this.preview;
    return state;
  }

  /** A frame came in (before the VAD has analysed it): the audio clock moves on. */
  arrived(tsMs: number, durationMs: number, audio?: { samples: Int16Array; sampleRate: number }): void {
    this.clock.observe(tsMs, durationMs, 1000);
    this.firstHeardMs ??= tsMs;
    if (audio) this.audio.push(tsMs, audio.samples, audio.sampleRate);
  }

  /** The VAD analysed the frame that `arrived` last. */
  heard(frame: HeardFrame): void {
    this.followVad(frame);
    this.decide();
    // Barge-in does not wait for the VAD to confirm speech: a pause costs little (the agent resumes if no
    // words come), a late stop is what users hear. Counted from the first speech frame of the run.
    if (frame.level === 'speech') this.speechRunStartMs ??= frame.tsMs;
    else this.speechRunStartMs = undefined;
    const run = this.speechRunStartMs;
    if (
      this.agent.phase === 'speaking' &&
      run !== undefined &&
      this.clock.latestMs - run >= this.opts.bargeInMinSpeechMs
    ) {
      this.bargeIn(this.user.phase === 'speaking' ? Math.min(this.speechStartMs, run) : run);
    }
    this.agentSide.follow(this.user.phase === 'speaking');
  }

  /**
   * Words from the recogniser. `beforeTakeover`: a final published while no instance held the session (read
   * back from stt at takeover), spoken before this instance heard any audio.
   */
  transcript(t: Transcript, beforeTakeover = false): void {
    this.words.heardUpTo(t);
    if (t.final && this.finalOfEarlyEnd(t)) return;
    if (t.endMs <= this.emittedUpToMs && this.emittedUpToMs >= 0) return; // late words of a turn already sent
    this.words.add(t);
    if (t.final) {
      // Words that began before this instance heard any audio were spoken before it took the session over: if the
      // speech also ended before (the VAD here never heard it), where the recogniser says it ended is the end.
      const spokenBefore = beforeTakeover || (this.firstHeardMs !== undefined && t.startMs < this.firstHeardMs);
      if (this.user.phase === 'listening' && spokenBefore && this.text !== '') {
        this.speechStopped(t.endMs);
      }
      this.save();
    }
    this.agentSide.heardWords(wordCount(this.text));
    this.decide();
  }

  /** The agent's turn finished playing. */
  playedOut(turnId: string): void {
    if (this.agentSide.playedOut(turnId)) this.save();
  }

  stop(): void {
    this.clearTimer();
    this.agentSide.stop();
  }

  private save(): void {
    this.effects.save(this.state);
  }

  private clearTimer(): void {
    clearTimeout(this.decideTimer);
    this.decideTimer = undefined;
  }

  // ── the user's side ────────────────────────────────────────────────────────────────────────────────────────

  /** listening/judging → speaking. */
  private speechStarted(atMs: number): void {
    // The user goes on: a preview of their words so far will not be what they said.
    this.cancelPreview(CANCEL_REASON.preemptAbandoned);
    this.user = { phase: 'speaking' };
    this.speechStartMs = atMs;
    this.pauseSpeech = undefined;
    this.clearTimer();
  }

  /** speaking → judging: the speech stopped at `endMs`. */
  private speechStopped(endMs: number): void {
    this.user = { phase: 'judging', endMs };
    this.pauseSpeech = this.audio.before(endMs);
  }

  /**
   * Follows the VAD inside speech: adaptive endpointing counts quiet from the first quiet frame, not from the
   * VAD's confirmation `minSilenceMs` later; a loud frame after that is the user going on.
   */
  private followVad(frame: HeardFrame): void {
    const fixed = this.opts.mode === 'fixed';
    for (const ev of frame.events) {
      this.effects.vad(ev.kind, ev.atMs);
      if (ev.kind === 'start') {
        if (this.user.phase !== 'speaking') this.speechStarted(ev.atMs);
      } else if (fixed) {
        this.speechStopped(ev.atMs);
        this.vadEndWall = Date.now();
      } else if (this.user.phase === 'speaking') {
        this.speechStopped(ev.atMs);
      }
    }
    if (fixed || !frame.inSpeech) return;
    if (frame.level === 'quiet') {
      if (this.user.phase === 'speaking') this.speechStopped(frame.tsMs);
    } else if (frame.level === 'speech' && this.user.phase !== 'speaking') {
      // The turn was already sent on this quiet: a new stretch of speech for everyone.
      if (this.user.phase === 'listening') this.effects.vad('start', frame.tsMs);
      this.speechStarted(this.user.phase === 'listening' ? frame.tsMs : this.speechStartMs);
    }
  }

  /**
   * judging → listening once the user has been quiet long enough for how finished their words sound and the
   * recogniser's final for that speech is in (or, failing the final, after `maxDelayMs`). Runs on every frame,
   * transcript and timer tick.
   */
  private decide(): void {
    if (this.opts.mode === 'fixed') return this.decideFixed();
    this.clearTimer();
    if (this.user.phase !== 'judging') return;
    const endMs = this.user.endMs;
    const said = this.text;
    const score = this.eou.score(said, this.pauseSpeech);
    const needed = endpointDelayMs(score, this.opts);
    // Quiet that was heard: a detector running behind its frames must not end the turn on audio still queued.
    const quietFor = this.clock.heard(HEARD_AHEAD_MS, INPUT_STALL_MS) - endMs;
    const haveFinal = this.words.finalFor(endMs);
    // `maxDelayMs` ends a turn whose final never comes; but while the recogniser is still behind the end of the
    // speech (a loaded machine, a slow network) its words are not all in yet, and ending now would cut them.
    const sttBehind = this.words.behind(endMs);
    const capMs = sttBehind ? this.opts.maxDelayMs + STT_LAG_GRACE_MS : this.opts.maxDelayMs;
    // Confident words the recogniser has stopped changing need not wait for its final.
    const early = !haveFinal && !sttBehind && this.words.stablePartial && score >= this.opts.earlyEndMinScore;
    if (((haveFinal || early) && quietFor >= needed) || quietFor >= capMs) return this.endTurn(endMs, score, early);
    const settled = haveFinal || this.words.stablePartial;
    if (
      this.opts.preemptiveGeneration &&
      !this.preview &&
      this.agent.phase !== 'barged-in' &&
      settled &&
      said !== '' &&
      score >= PREVIEW_MIN_SCORE
    ) {
      this.sendPreview(endMs, said, score);
    }
    const wait = haveFinal ? needed - quietFor : capMs - quietFor;
    this.decideTimer = setTimeout(() => this.decide(), Math.max(5, wait));
  }

  /** Baseline: never before `fixedDelayMs` after the VAD's confirmed end, then as soon as a final is in. */
  private decideFixed(): void {
    this.clearTimer();
    if (this.user.phase !== 'judging' || this.vadEndWall === 0) return;
    const now = Date.now();
    const earliest = this.vadEndWall + this.opts.fixedDelayMs;
    const haveFinal = this.words.finalFor(this.user.endMs, false);
    if (now >= earliest && (haveFinal || now >= earliest + this.opts.maxDelayMs)) {
      this.vadEndWall = 0;
      return this.endTurn(this.user.endMs, heuristicEou.score(this.text));
    }
    const wait = now < earliest ? earliest - now : earliest + this.opts.maxDelayMs - now;
    this.decideTimer = setTimeout(() => this.decideFixed(), wait);
  }

  /** The user's turn ends: committed (the preview's id when its words are the same), and the agent's begins. */
  private endTurn(endMs: number, score: number, onPartial = false): void {
    this.clearTimer();
    // The user has had their say over the agent's turn: that is a barge-in, whatever the VAD made of it.
    if (this.text !== '') {
      if (this.agent.phase === 'speaking') this.bargeIn(this.speechStartMs);
      this.agentSide.commit();
    }
    const said = this.text;
    const before = this.words.settledText;
    this.user = { phase: 'listening' };
    if (said === '') return; // noise: VAD heard something the recogniser found no words in
    // The preview already started the responders: commit it if the words are the same, else start over.
    const previewedAt = this.preview && sameWords(this.preview.text, said) ? this.preview.atWall : undefined;
    const previewed = previewedAt !== undefined ? this.preview!.turnId : undefined;
    if (!previewed) this.cancelPreview(CANCEL_REASON.preemptMismatch);
    this.preview = undefined;
    const turnId = previewed ?? newTurnId();
    this.emitEnd(turnId, said, score, endMs, previewedAt, onPartial ? { before } : undefined);
    this.emittedUpToMs = endMs;
    this.words.clear();
    this.save();
  }

  /** An `end` turn out (span, metric, message); the agent's turn begins on it. */
  private emitEnd(
    turnId: string,
    text: string,
    score: number,
    endMs: number,
    previewedAt?: number,
    early?: { before: string },
  ): void {
    const delayMs = Math.max(0, Date.now() - this.clock.wallOf(endMs));
    this.effects.ended({ turnId, text, score, delayMs, ...(previewedAt !== undefined ? { previewedAt } : {}) });
    this.effects.turn({ turnId, kind: 'end', text, eouProb: score, speechEndMs: endMs });
    this.agentSide.speaks(turnId);
    this.lastEmitted = { turnId, text, score, atWall: Date.now(), ...(early ? { early } : {}) };
  }

  /**
   * The final for a turn ended on a partial: taken (true) as that turn's. Its words the same: nothing to do. Else,
   * if the user has said nothing since, the turn is replaced — cancelled, and the final's words sent as a new turn
   * (the responders answer those); if they have, the turn stands and the final is dropped.
   */
  private finalOfEarlyEnd(t: Transcript): boolean {
    const last = this.lastEmitted;
    if (!last?.early || t.endMs > this.emittedUpToMs + RESUMED_MARGIN_MS) return false;
    const { before } = last.early;
    delete last.early;
    const text = [before, t.text.trim()].filter((w) => w !== '').join(' ');
    const quietSince = this.user.phase === 'listening' && this.text === '' && this.agentTurn === last.turnId;
    if (sameWords(text, last.text) || text.trim() === '' || !quietSince) return true;
    this.effects.cancel(last.turnId, CANCEL_REASON.finalRevised);
    const turnId = newTurnId();
    this.effects.revised?.({ turnId: last.turnId, text: last.text }, { turnId, text });
    this.emitEnd(turnId, text, last.score, this.emittedUpToMs);
    this.save();
    return true;
  }

  /**
   * The agent speaks first (its profile's greeting): an agent turn with no user turn before it; the user may barge
   * in on it as on any reply.
   */
  greet(text: string, atMs: number): void {
    const turnId = newTurnId();
    this.effects.turn({ turnId, kind: 'agent', text, eouProb: 1, speechEndMs: atMs });
    this.agentSide.speaks(turnId);
    this.save();
  }

  /** Preemptive generation: the words are settled and the user is quiet; the turn is not committed yet. */
  private sendPreview(endMs: number, said: string, score: number): void {
    const turnId = newTurnId();
    this.preview = { turnId, text: said, atWall: preciseNow() };
    this.effects.turn({ turnId, kind: 'preview', text: said, eouProb: score, speechEndMs: endMs });
    // Saved after it is sent: the server stores a KV write inline, and the responders should not wait on it.
    this.save();
  }

  private cancelPreview(reason: string): void {
    if (!this.preview) return;
    this.effects.cancel(this.preview.turnId, reason);
    this.preview = undefined;
    this.save();
  }

  private bargeIn(atMs: number): void {
    this.agentSide.bargeIn(atMs, wordCount(this.text));
  }

  /**
   * A barge-in ended the agent's turn. Talking again right after a turn that was sent unfinished ("a table
   * with…", ended by `maxDelayMs`): the user was not done, their words carry over. A finished question followed by
   * another stays two turns.
   */
  private bargeInCommitted(turnId: string, atWall: number): void {
    const last = this.lastEmitted;
    if (
      last?.turnId === turnId &&
      last.score < PREVIEW_MIN_SCORE &&
      atWall - last.atWall < this.opts.continuationWindowMs
    ) {
      this.words.prepend(last.text);
    }
    this.save();
  }
}
