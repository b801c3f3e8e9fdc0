import {
  LIMITS,
  RESPONDER_SOURCES,
  type Reply,
  type ReplyReplayReply,
  type ResponderSource,
  type Turn,
  type Vad,
} from '@va/protocol';
import type { SpeechChunk, TTS } from '@va/providers';
import type { Context } from '@va/telemetry';
import { RecentMap, RecentSet } from '@va/actor';
import { TurnSpeaker, type FillerSource, type SpeakerOutput, type SpeechProgress } from './turn-speaker.js';

/** Text one source (opener or answer) of a turn may speak: what a `speech` message can carry. */
export const MAX_SPOKEN_CHARS = LIMITS.textChars * 4;

export interface TtsActorOptions {
  /**
   * Silence the user may hear after the opener (or after the end of their turn, with no opener) before a filler
   * is spoken, if the answer's first audio is still not there.
   */
  fillerAfterMs: number;
  /** Short phrases said while the answer is late (one per turn, in turn); empty = no fillers. */
  fillers: readonly string[];
}

export const TTS_DEFAULTS = {
  fillerAfterMs: 500,
  fillers: ['One moment.', 'Just a second.', 'Bear with me.'],
} as const satisfies TtsActorOptions;

/** What the session asks of the world besides a turn's output: turn lifetimes and bounded text. */
export interface SessionSpeakerIo extends SpeakerOutput {
  /** Aborts when the turn is cancelled (control) or ended. */
  turnSignal(turnId: string): AbortSignal;
  /** The turn is over here: its signal and stale-data filter are released. */
  endTurn(turnId: string): void;
  /** Keeps the session open until the promise settles (a turn being spoken). */
  track(work: Promise<void>): void;
  /** Text past MAX_SPOKEN_CHARS was dropped from `source`. */
  textDropped(source: ResponderSource): void;
  /** The audio of a filler phrase (synthesized once per instance). */
  fillerAudio(text: string, voice?: string): Promise<SpeechChunk[]>;
}

/**
 * One session's voice: routes each reply delta to its turn's speaker (a new turn supersedes the previous one),
 * remembers which turns are committed, paused by a barge-in or already spoken, and whether the user is speaking
 * (a filler never talks over the user).
 */
export class SessionSpeaker implements FillerSource {
  private readonly turns = new Map<string, TurnSpeaker>();
  private current: TurnSpeaker | undefined;
  /** Commit times of recent turns (a `turn end` usually arrives before the turn's first reply). */
  private readonly commits = new RecentMap<string, number>(16);
  /** Agent turns (a greeting): no opener comes for them, the answer is all there is. */
  private readonly withoutOpener = new RecentSet<string>(16);
  /** Turns paused by a barge-in. */
  private readonly paused = new Set<string>();
  /** Turns already spoken: a late delta (an opener still streaming after the answer) must not reopen one. */
  private readonly finished = new RecentSet<string>(64);
  private userSpeaking = false;
  private fillersSpoken = 0;
  /** The newest turn spoken here: the only one a gateway may ask to hear again. */
  private latest: string | undefined;

  constructor(
    private readonly tts: TTS,
    private readonly opts: TtsActorOptions,
    private readonly io: SessionSpeakerIo,
  ) {}

  /** The voice the session's agent speaks in (undefined: the TTS adapter's own); a handoff changes it. */
  voice: string | undefined;

  get enabled(): boolean {
    return this.opts.fillers.length > 0;
  }

  /** A delta of one responder's reply. */
  reply(source: ResponderSource, m: Reply, context: Context): void {
    if (this.finished.has(m.turnId)) return;
    const turn = this.turnFor(m.turnId, context);
    const s = turn[source];
    if (m.seq < s.nextSeq) return; // a duplicate
    s.nextSeq = m.seq + 1;
    // What one source of a turn may speak is bounded (the speech message carries it whole): past that, deltas
    // are dropped and counted rather than queued for a synthesizer that may be slower than the LLM.
    let delta = m.delta;
    const room = MAX_SPOKEN_CHARS - s.received.length;
    if (delta && room < delta.length) {
      this.io.textDropped(source);
      delta = delta.slice(0, Math.max(0, room));
    }
    turn.text(source, delta, m.done);
  }

  turn(t: Turn): void {
    if (t.kind === 'end' || t.kind === 'agent') {
      const now = performance.now();
      this.commits.set(t.turnId, now);
      this.turns.get(t.turnId)?.committedAt(now);
      if (t.kind === 'agent') {
        this.withoutOpener.add(t.turnId);
        this.turns.get(t.turnId)?.text('fast', '', true);
      }
    } else if (t.kind === 'barge-in') {
      this.paused.add(t.turnId);
    } else if (t.kind === 'resume') {
      this.paused.delete(t.turnId);
    }
  }

  /**
   * Taken over mid-turn: the turn the predecessor was speaking, how far its audio went, and the replies so far
   * (from the responders). Speaks on from there; live deltas already past the replies' `nextSeq` follow.
   */
  resume(
    turnId: string,
    sent: SpeechProgress,
    replies: Record<ResponderSource, ReplyReplayReply>,
    context: Context,
  ): void {
    if (this.finished.has(turnId) || this.turns.has(turnId)) return;
    // Committed: the predecessor was speaking it.
    this.commits.set(turnId, performance.now());
    const turn = this.turnFor(turnId, context, sent);
    for (const source of RESPONDER_SOURCES) {
      const r = replies[source];
      turn[source].nextSeq = r.nextSeq;
      turn.text(source, r.text, r.done);
    }
  }

  /**
   * A gateway took the session up after the one playing `turnId` died, and with it what it held in its playout
   * buffer (audio goes out as fast as it is made). Speaks the turn again from what was heard of each source
   * (`from`, text offsets) — if it is still the newest turn here; false otherwise.
   */
  replay(
    turnId: string,
    from: Record<ResponderSource, number>,
    replies: Record<ResponderSource, ReplyReplayReply>,
    context: Context,
  ): boolean {
    if (turnId !== this.latest) return false;
    const speaking = this.turns.get(turnId);
    if (speaking) this.endTurn(speaking);
    this.finished.delete(turnId);
    this.resume(turnId, { sentTo: from, seq: 0, audioMs: 0 }, replies, context);
    return true;
  }

  vad(v: Vad): void {
    this.userSpeaking = v.kind === 'start';
  }

  mayInterject(turnId: string): boolean {
    return !this.userSpeaking && !this.paused.has(turnId);
  }

  next(turnId: string): { text: string; audio: Promise<SpeechChunk[]> } | undefined {
    // A greeting is what the agent says first: nothing to fill for.
    if (!this.enabled || this.withoutOpener.has(turnId)) return undefined;
    const text = this.opts.fillers[this.fillersSpoken++ % this.opts.fillers.length]!;
    return { text, audio: this.io.fillerAudio(text, this.voice) };
  }

  stop(): void {
    for (const t of [...this.turns.values()]) this.endTurn(t);
  }

  private turnFor(turnId: string, context: Context, resumed?: SpeechProgress): TurnSpeaker {
    const existing = this.turns.get(turnId);
    if (existing) return existing;
    // A new turn supersedes whatever the previous one still had to say.
    if (this.current) this.endTurn(this.current);
    const turn = new TurnSpeaker(
      turnId,
      context,
      this.io.turnSignal(turnId),
      this.tts,
      this.io,
      this,
      this.opts.fillerAfterMs,
      this.voice,
    );
    if (resumed) turn.resumeAfter(resumed);
    // Kept before any audio: a successor that takes over before the first sentence is out still knows the turn.
    else this.io.progress?.(turnId, { sentTo: { fast: 0, deep: 0 }, seq: 0, audioMs: 0 }, context);
    const at = this.commits.get(turnId);
    if (at !== undefined) turn.committedAt(at);
    if (this.withoutOpener.has(turnId)) turn.text('fast', '', true);
    this.turns.set(turnId, turn);
    this.current = turn;
    this.latest = turnId;
    this.io.track(this.speak(turn));
    return turn;
  }

  private async speak(turn: TurnSpeaker): Promise<void> {
    try {
      await turn.run();
    } finally {
      if (this.turns.get(turn.turnId) === turn) this.endTurn(turn);
      if (this.current === turn) this.current = undefined;
    }
  }

  private endTurn(turn: TurnSpeaker): void {
    this.finished.add(turn.turnId);
    turn.close();
    this.turns.delete(turn.turnId);
    this.paused.delete(turn.turnId);
    this.io.endTurn(turn.turnId);
  }
}
