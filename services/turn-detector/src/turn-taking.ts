import { randomBytes } from 'node:crypto';
import { FrameClock } from '@va/audio';
import { CANCEL_REASON, FRAME_MS, LIMITS, type Transcript, type Turn } from '@va/protocol';
import { preciseNow } from '@va/telemetry';
import { heuristicEou, SOUNDS_FINISHED, type EndOfUtteranceModel, type SpeechTail } from '@va/providers';
import { endpointDelayMs, type EndpointingOptions } from './endpointing.js';
import { RecentAudio } from './recent-audio.js';

/** A final ending this far past the silence being judged belongs to speech after it. */
const RESUMED_MARGIN_MS = 200;
/** A final counts for the speech being judged if it ends no earlier than this before the speech stopped. */
const FINAL_COVER_MS = 300;
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
 * What a new owner needs to carry on mid-conversation: which audio is already answered, the agent turn a user
 * could barge in on, the words heard so far of the turn being collected, and a preview the responders started on.
 */
export interface TurnState {
  emittedUpToMs: number;
  agentTurn?: string;
  lastEmitted?: {
    turnId: string;
    text: string;
    score: number;
    atWall: number;
    /** Ended on a partial: the final for it is still to come, and the words before that partial. */
    early?: { before: string };
  };
  finals: string[];
  lastFinalEndMs: number;
  preview?: { turnId: string; text: string; atWall: number };
}

/**
 * The user's side: quiet (`listening`), talking (`speaking`, the VAD may still be inside its silence window), or
 * stopped at `endMs` while the end of their turn is judged (`judging`: quiet long enough for how finished the words
 * sound, and the recogniser's final in).
 */
export type UserState = { phase: 'listening' } | { phase: 'speaking' } | { phase: 'judging'; endMs: number };

/**
 * The agent's side: no reply (`idle`), a reply being answered or played (`speaking`), or paused because the user
 * spoke over it (`barged-in`) until words end it or quiet resumes it.
 */
export type AgentState =
  | { phase: 'idle' }
  | { phase: 'speaking'; turnId: string }
  | { phase: 'barged-in'; turnId: string; atWall: number; resumeTimer?: NodeJS.Timeout };

/** One analysed audio frame: the VAD's confirmed transitions and how loud this frame was for it. */
export interface HeardFrame {
  tsMs: number;
  /** Start/end the VAD confirmed with this frame (hysteresis and minimum durations applied). */
  events: readonly { kind: 'start' | 'end'; atMs: number }[];
  /** The VAD is inside speech: a start confirmed and no end yet. */
  inSpeech: boolean;
  /** This frame alone: above the VAD's start threshold (`speech`), below its end threshold (`quiet`), or between. */
  level: 'speech' | 'quiet' | 'between';
}

/** What turn-taking does to the world; the actor sends it on the bus, a test records it. */
export interface TurnTakingEffects {
  /** A message on the session's `turn` channel (end, preview, barge-in, resume). */
  turn(msg: Turn): void;
  /** A confirmed VAD transition on the `vad` channel. */
  vad(kind: 'start' | 'end', atMs: number): void;
  /** Cancels a turn everywhere (`control`). */
  cancel(turnId: string, reason: string): void;
  /** Keeps the state for a successor. */
  save(state: TurnState): void;
  /** A user turn ended `delayMs` after its speech: the `turn-detect` span and the end-of-utterance metric. */
  ended(turn: { turnId: string; text: string; score: number; delayMs: number; previewedAt?: number }): void;
  /** A turn ended on a partial was replaced by the final's different words (counted, logged). */
  revised?(from: { turnId: string; text: string }, to: { turnId: string; text: string }): void;
  /** The user spoke over the agent's turn (counted, logged). */
  bargedIn(turnId: string, atMs: number): void;
  /** A barge-in without words: the agent plays on. */
  resumed(turnId: string): void;
}

export function newTurnId(): string {
  return `t${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
}

/** Words as a recogniser's text compares: case and punctuation do not make a preview differ. */
function sameWords(a: string, b: string): boolean {
  const norm = (t: string) =>
    t
      .toLowerCase()
      .replace(/[^\p{L}\p{N}' ]/gu, ' ')
      .split(/\s+/)
      .filter(Boolean)
      .join(' ');
  return norm(a) === norm(b);
}

export function wordCount(text: string): number {
  return text.split(/\s+/).filter((w) => /[\p{L}\p{N}]/u.test(w)).length;
}

/**
 * One session's turn-taking: VAD start/end from the audio, end of turn from how long the user has been quiet
 * against how finished their words sound, and barge-in when the user speaks over the agent's reply. Two state
 * machines side by side — the user's (`listening → speaking → judging → listening`) and the agent's
 * (`idle → speaking ↔ barged-in → idle`) — driven by frames, transcripts, playout and its own timers (wall clock:
 * `Date.now`/`setTimeout`, so a test drives it with fake timers). No I/O: what it decides goes to `effects`.
 */
export class TurnTaking {
  user: UserState = { phase: 'listening' };
  agent: AgentState = { phase: 'idle' };
  /** Audio clock → wall clock; frames arrive in real time, so the newest one anchors both. */
  readonly clock = new FrameClock();
  private speechStartMs = 0;
  /** Final transcripts of the user turn being collected, and the newest partial after them. */
  private finals: string[] = [];
  private partial = '';
  private partialStable = false;
  private lastFinalEndMs = -1;
  /** How far the recogniser has heard (the newest transcript's end): behind the speech end = words still coming. */
  private sttHeardMs = -1;
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
    if (!saved) return;
    this.emittedUpToMs = saved.emittedUpToMs;
    if (saved.agentTurn) this.agent = { phase: 'speaking', turnId: saved.agentTurn };
    this.lastEmitted = saved.lastEmitted;
    this.preview = saved.preview;
    this.finals = saved.finals;
    this.lastFinalEndMs = saved.lastFinalEndMs;
  }

  /** The agent turn a user could barge in on. */
  get agentTurn(): string | undefined {
    return this.agent.phase === 'idle' ? undefined : this.agent.turnId;
  }

  /** Where a new owner asks stt to replay finals from. */
  get transcriptsAfterMs(): number {
    return Math.max(this.emittedUpToMs, this.lastFinalEndMs);
  }

  get lastFinalMs(): number {
    return this.lastFinalEndMs;
  }

  /** The user's words of the turn being collected, at most what one turn message may carry (the newest). */
  get text(): string {
    return [...this.finals, this.partial]
      .filter((t) => t.trim() !== '')
      .join(' ')
      .trim()
      .slice(-LIMITS.textChars)
      .trim();
  }

  get state(): TurnState {
    const state: TurnState = {
      emittedUpToMs: this.emittedUpToMs,
      finals: this.finals,
      lastFinalEndMs: this.lastFinalEndMs,
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
    this.followPause();
  }

  /**
   * Words from the recogniser. `beforeTakeover`: a final published while no instance held the session (read
   * back from stt at takeover), spoken before this instance heard any audio.
   */
  transcript(t: Transcript, beforeTakeover = false): void {
    this.sttHeardMs = Math.max(this.sttHeardMs, t.endMs);
    if (t.final && this.finalOfEarlyEnd(t)) return;
    if (t.endMs <= this.emittedUpToMs && this.emittedUpToMs >= 0) return; // late words of a turn already sent
    if (t.final) {
      if (t.text.trim() !== '') this.finals.push(t.text.trim());
      // A turn's text is at most LIMITS.textChars: a user who never pauses keeps their latest words.
      while (this.finals.length > 1 && this.finals.join(' ').length > LIMITS.textChars) this.finals.shift();
      this.partial = '';
      this.partialStable = false;
      this.lastFinalEndMs = Math.max(this.lastFinalEndMs, t.endMs);
      // Words that began before this instance heard any audio were spoken before it took the session over: if the
      // speech also ended before (the VAD here never heard it), where the recogniser says it ended is the end.
      const spokenBefore = beforeTakeover || (this.firstHeardMs !== undefined && t.startMs < this.firstHeardMs);
      if (this.user.phase === 'listening' && spokenBefore && this.text !== '') {
        this.speechStopped(t.endMs);
      }
      this.save();
    } else {
      this.partial = t.text;
      this.partialStable = t.stable;
    }
    if (this.agent.phase === 'barged-in' && wordCount(this.text) >= this.opts.minInterruptionWords)
      this.commitBargeIn();
    this.decide();
  }

  /** The agent's turn finished playing. */
  playedOut(turnId: string): void {
    if (this.agentTurn !== turnId) return;
    if (this.agent.phase === 'barged-in') clearTimeout(this.agent.resumeTimer);
    this.agent = { phase: 'idle' };
    this.save();
  }

  stop(): void {
    this.clearTimer();
    if (this.agent.phase === 'barged-in') clearTimeout(this.agent.resumeTimer);
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
    const haveFinal =
      this.lastFinalEndMs >= endMs - FINAL_COVER_MS &&
      this.lastFinalEndMs <= endMs + RESUMED_MARGIN_MS &&
      this.partial === '';
    // `maxDelayMs` ends a turn whose final never comes; but while the recogniser is still behind the end of the
    // speech (a loaded machine, a slow network) its words are not all in yet, and ending now would cut them.
    const sttBehind = this.sttHeardMs < endMs - FINAL_COVER_MS;
    const capMs = sttBehind ? this.opts.maxDelayMs + STT_LAG_GRACE_MS : this.opts.maxDelayMs;
    // Confident words the recogniser has stopped changing need not wait for its final.
    const early =
      !haveFinal && !sttBehind && this.partialStable && this.partial !== '' && score >= this.opts.earlyEndMinScore;
    if (((haveFinal || early) && quietFor >= needed) || quietFor >= capMs) return this.endTurn(endMs, score, early);
    const settled = haveFinal || (this.partialStable && this.partial !== '');
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
    const haveFinal = this.lastFinalEndMs >= this.user.endMs - FINAL_COVER_MS && this.partial === '';
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
      this.commitBargeIn();
    }
    const said = this.text;
    const before = this.finals.join(' ');
    this.user = { phase: 'listening' };
    if (said === '') return; // noise: VAD heard something the recogniser found no words in
    // The preview already started the responders: commit it if the words are the same, else start over.
    const previewedAt = this.preview && sameWords(this.preview.text, said) ? this.preview.atWall : undefined;
    const previewed = previewedAt !== undefined ? this.preview!.turnId : undefined;
    if (!previewed) this.cancelPreview(CANCEL_REASON.preemptMismatch);
    this.preview = undefined;
    const turnId = previewed ?? newTurnId();
    const delayMs = Math.max(0, Date.now() - this.clock.wallOf(endMs));
    this.effects.ended({ turnId, text: said, score, delayMs, ...(previewedAt !== undefined ? { previewedAt } : {}) });
    this.effects.turn({ turnId, kind: 'end', text: said, eouProb: score, speechEndMs: endMs });
    this.agent = { phase: 'speaking', turnId };
    this.lastEmitted = { turnId, text: said, score, atWall: Date.now(), ...(onPartial ? { early: { before } } : {}) };
    this.emittedUpToMs = endMs;
    this.finals = [];
    this.partial = '';
    this.save();
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
    const delayMs = Math.max(0, Date.now() - this.clock.wallOf(this.emittedUpToMs));
    this.effects.ended({ turnId, text, score: last.score, delayMs });
    this.effects.turn({ turnId, kind: 'end', text, eouProb: last.score, speechEndMs: this.emittedUpToMs });
    this.agent = { phase: 'speaking', turnId };
    this.lastEmitted = { turnId, text, score: last.score, atWall: Date.now() };
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
    this.agent = { phase: 'speaking', turnId };
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

  // ── the agent's side ───────────────────────────────────────────────────────────────────────────────────────

  /**
   * speaking → barged-in: the user speaks over the agent's turn: pause its playout at once, then end the turn
   * when words come (`commitBargeIn`) or play on when none do (`resumeAfterNoise`).
   */
  private bargeIn(atMs: number): void {
    if (this.agent.phase !== 'speaking') return;
    const { turnId } = this.agent;
    this.agent = { phase: 'barged-in', turnId, atWall: Date.now() };
    this.effects.bargedIn(turnId, atMs);
    this.effects.turn({ turnId, kind: 'barge-in', text: '', eouProb: 0, speechEndMs: atMs });
    // Words may be in before the VAD has heard enough (the recogniser can be quicker): they count.
    if (!this.opts.resumeFalseInterruption || wordCount(this.text) >= this.opts.minInterruptionWords) {
      this.commitBargeIn();
    }
  }

  /** barged-in → idle: words over the agent end its turn everywhere (LLMs, tts, playout); the user's begins. */
  private commitBargeIn(): void {
    if (this.agent.phase !== 'barged-in') return;
    const { turnId, atWall, resumeTimer } = this.agent;
    clearTimeout(resumeTimer);
    this.agent = { phase: 'idle' };
    // Talking again right after a turn that was sent unfinished ("a table with…", ended by `maxDelayMs`): the
    // user was not done, their words carry over. A finished question followed by another stays two turns.
    const last = this.lastEmitted;
    if (
      last?.turnId === turnId &&
      last.score < PREVIEW_MIN_SCORE &&
      atWall - last.atWall < this.opts.continuationWindowMs
    ) {
      this.finals.unshift(last.text);
    }
    this.effects.cancel(turnId, CANCEL_REASON.bargeIn);
    this.save();
  }

  /** barged-in → speaking: quiet for `falseInterruptionMs` without words (a cough, a door): play on. */
  private resumeAfterNoise(): void {
    if (this.agent.phase !== 'barged-in') return;
    const { turnId } = this.agent;
    this.agent = { phase: 'speaking', turnId };
    this.effects.resumed(turnId);
    this.effects.turn({ turnId, kind: 'resume', text: '', eouProb: 0, speechEndMs: this.clock.latestMs });
  }

  /** While barged in: the resume countdown runs only while the user is quiet. */
  private followPause(): void {
    const agent = this.agent;
    if (agent.phase !== 'barged-in') return;
    if (this.user.phase === 'speaking') {
      clearTimeout(agent.resumeTimer);
      agent.resumeTimer = undefined;
    } else {
      agent.resumeTimer ??= setTimeout(() => this.resumeAfterNoise(), this.opts.falseInterruptionMs);
    }
  }
}
