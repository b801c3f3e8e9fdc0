import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Transcript, Turn } from '@va/protocol';
import { heuristicEou } from '@va/providers';
import { ENDPOINTING_DEFAULTS, type EndpointingOptions } from '../src/endpointing.js';
import { TurnTaking, type HeardFrame, type TurnState, type TurnTakingEffects } from '../src/turn-taking.js';

/** Everything the state machine did, in order, as one line each. */
class RecordedEffects implements TurnTakingEffects {
  readonly log: string[] = [];
  readonly turns: Turn[] = [];
  saved: TurnState | undefined;
  turn(msg: Turn): void {
    this.turns.push(msg);
    this.log.push(`turn ${msg.kind}${msg.text ? ` "${msg.text}"` : ''}`);
  }
  vad(kind: 'start' | 'end', atMs: number): void {
    this.log.push(`vad ${kind} ${atMs}`);
  }
  cancel(turnId: string, reason: string): void {
    this.log.push(`cancel ${reason}`);
  }
  save(state: TurnState): void {
    this.saved = structuredClone(state);
  }
  ended(): void {}
  bargedIn(): void {
    this.log.push('barged in');
  }
  resumed(): void {
    this.log.push('resumed');
  }
}

const FRAME_MS = 20;

/** Feeds the machine a frame every 20 ms of fake time, as a live microphone would. */
class Driver {
  tsMs = 0;
  private inSpeech = false;
  private quietFrom = 0;
  constructor(readonly turns: TurnTaking) {}

  /** `ms` of speech frames; the VAD confirms the start with the first. */
  speak(ms: number): void {
    for (let t = 0; t < ms; t += FRAME_MS) {
      const events: HeardFrame['events'] = this.inSpeech ? [] : [{ kind: 'start', atMs: this.tsMs }];
      this.inSpeech = true;
      this.quietFrom = this.tsMs + FRAME_MS;
      this.frame({ events, inSpeech: true, level: 'speech' });
    }
  }

  /** `ms` of quiet frames; the VAD confirms the end after `confirmMs` (its minimum silence). */
  quiet(ms: number, confirmMs = 300): void {
    for (let t = 0; t < ms; t += FRAME_MS) {
      const confirm = this.inSpeech && this.tsMs - this.quietFrom >= confirmMs;
      const events: HeardFrame['events'] = confirm ? [{ kind: 'end', atMs: this.quietFrom }] : [];
      if (confirm) this.inSpeech = false;
      this.frame({ events, inSpeech: this.inSpeech, level: 'quiet' });
    }
  }

  private frame(f: Omit<HeardFrame, 'tsMs'>): void {
    this.turns.arrived(this.tsMs, FRAME_MS);
    this.turns.heard({ tsMs: this.tsMs, ...f });
    this.tsMs += FRAME_MS;
    vi.advanceTimersByTime(FRAME_MS);
  }
}

function final(text: string, startMs: number, endMs: number): Transcript {
  return { text, final: true, stable: true, confidence: 0.9, startMs, endMs };
}

function setup(options: Partial<EndpointingOptions> = {}, saved?: TurnState) {
  const effects = new RecordedEffects();
  const turns = new TurnTaking({ ...ENDPOINTING_DEFAULTS, ...options }, heuristicEou, effects, saved);
  return { effects, turns, mic: new Driver(turns) };
}

describe('TurnTaking (the turn-detector state machine, fake clock)', () => {
  beforeEach(() => void vi.useFakeTimers({ now: 1_000_000 }));
  afterEach(() => void vi.useRealTimers());

  it('listening → speaking → judging → listening: a finished question ends the turn once its final is in', () => {
    const { effects, turns, mic } = setup({ preemptiveGeneration: false });
    expect(turns.user.phase).toBe('listening');
    mic.speak(600);
    expect(turns.user.phase).toBe('speaking');
    mic.quiet(100);
    expect(turns.user).toEqual({ phase: 'judging', endMs: 600 });
    turns.transcript(final('what time is it', 0, 600));
    mic.quiet(300);
    expect(turns.user.phase).toBe('listening');
    expect(turns.agent).toMatchObject({ phase: 'speaking' });
    expect(effects.log).toEqual(['vad start 0', 'turn end "what time is it"', 'vad end 600']);
  });

  it('words that sound unfinished wait longer; speech resuming within the wait keeps one turn', () => {
    const { effects, turns, mic } = setup({ preemptiveGeneration: false });
    mic.speak(400);
    turns.transcript(final('i would like a table for', 0, 400));
    mic.quiet(600);
    expect(turns.user.phase).toBe('judging'); // "for" sounds unfinished: more than 600 ms of quiet needed
    mic.speak(400);
    expect(turns.user.phase).toBe('speaking');
    turns.transcript(final('two people', 1000, 1400));
    mic.quiet(400);
    expect(effects.turns.filter((t) => t.kind === 'end').map((t) => t.text)).toEqual([
      'i would like a table for two people',
    ]);
  });

  it('without a final, the turn ends at maxDelayMs after the recogniser has heard the end', () => {
    const { effects, turns, mic } = setup({ preemptiveGeneration: false, maxDelayMs: 800 });
    mic.speak(400);
    turns.transcript({ ...final('hello there', 0, 400), final: false, stable: false });
    mic.quiet(700);
    expect(turns.user.phase).toBe('judging');
    mic.quiet(200);
    expect(effects.turns.map((t) => t.kind)).toEqual(['end']);
  });

  it('previews settled words and commits the preview under the same turn id', () => {
    const { effects, turns, mic } = setup();
    mic.speak(600);
    turns.transcript({ ...final('what is the weather', 0, 600), final: false, stable: true });
    mic.quiet(40);
    expect(effects.turns.map((t) => t.kind)).toEqual(['preview']);
    turns.transcript(final('what is the weather', 0, 600));
    mic.quiet(400);
    const [preview, end] = effects.turns;
    expect(end).toMatchObject({ kind: 'end', turnId: preview!.turnId });
  });

  it('a preview the user talks past is cancelled as abandoned', () => {
    const { effects, turns, mic } = setup();
    mic.speak(600);
    turns.transcript({ ...final('book a flight', 0, 600), final: false, stable: true });
    mic.quiet(40);
    mic.speak(200);
    expect(effects.log).toContain('cancel preempt-abandoned');
  });

  it('speaking → barged-in → idle: the user talks over the agent with words', () => {
    const { effects, turns, mic } = setup({ preemptiveGeneration: false });
    mic.speak(400);
    turns.transcript(final('tell me a story', 0, 400));
    mic.quiet(500);
    const agentTurn = turns.agentTurn;
    expect(turns.agent.phase).toBe('speaking');
    mic.speak(100);
    expect(turns.agent).toMatchObject({ phase: 'barged-in', turnId: agentTurn });
    turns.transcript({ ...final('stop', 900, 1000), final: false, stable: false });
    expect(turns.agent.phase).toBe('idle');
    expect(effects.log.slice(-3)).toEqual(['barged in', 'turn barge-in', 'cancel barge-in']);
  });

  it('barged-in → speaking: a cough with no words resumes the agent after falseInterruptionMs of quiet', () => {
    const { effects, turns, mic } = setup({ preemptiveGeneration: false, falseInterruptionMs: 500 });
    mic.speak(400);
    turns.transcript(final('tell me a story', 0, 400));
    mic.quiet(500);
    mic.speak(60);
    expect(turns.agent.phase).toBe('barged-in');
    mic.quiet(400);
    expect(turns.agent.phase).toBe('barged-in'); // the countdown runs from the first quiet frame
    mic.quiet(200);
    expect(turns.agent.phase).toBe('speaking');
    expect(effects.log).toContain('resumed');
    expect(effects.turns.at(-1)?.kind).toBe('resume');
  });

  it('the agent speaks first (a greeting): an agent turn the user can barge in on like any reply', () => {
    const { effects, turns, mic } = setup({ preemptiveGeneration: false });
    mic.quiet(40);
    turns.greet('Hello, Chez Nous, how can I help?', 40);
    expect(effects.turns.at(-1)).toMatchObject({ kind: 'agent', text: 'Hello, Chez Nous, how can I help?' });
    expect(turns.agent).toEqual({ phase: 'speaking', turnId: effects.turns.at(-1)!.turnId });
    mic.speak(100);
    expect(turns.agent.phase).toBe('barged-in');
    turns.transcript({ ...final('a table for two', 60, 160), final: false, stable: false });
    expect(turns.agent.phase).toBe('idle');
    expect(effects.log.slice(-3)).toEqual(['barged in', 'turn barge-in', 'cancel barge-in']);
  });

  it('playout done: the agent is idle, and speech after it is no barge-in', () => {
    const { effects, turns, mic } = setup({ preemptiveGeneration: false });
    mic.speak(400);
    turns.transcript(final('hi', 0, 400));
    mic.quiet(500);
    turns.playedOut(turns.agentTurn!);
    expect(turns.agent.phase).toBe('idle');
    mic.speak(200);
    expect(effects.log).not.toContain('barged in');
  });

  it('an unfinished turn sent at maxDelayMs carries over when the user goes on right after', () => {
    const { effects, turns, mic } = setup({ preemptiveGeneration: false, maxDelayMs: 600 });
    mic.speak(400);
    turns.transcript(final('a table with', 0, 400));
    mic.quiet(700);
    expect(effects.turns.map((t) => t.kind)).toEqual(['end']);
    mic.speak(300);
    turns.transcript(final('a view', 1100, 1400));
    mic.quiet(1600);
    expect(effects.turns.filter((t) => t.kind === 'end').map((t) => t.text)).toEqual([
      'a table with',
      'a table with a view',
    ]);
  });

  it('fixed mode waits fixedDelayMs after the VAD confirms the end', () => {
    const { effects, turns, mic } = setup({ mode: 'fixed', fixedDelayMs: 500, preemptiveGeneration: false });
    mic.speak(400);
    turns.transcript(final('what time is it', 0, 400));
    mic.quiet(700); // confirmed 300 ms after the speech stopped, so 800 ms in total
    expect(effects.turns).toEqual([]);
    mic.quiet(200);
    expect(effects.turns.map((t) => t.kind)).toEqual(['end']);
  });

  it('a successor carries on from the saved state: the words so far and the agent turn', () => {
    const first = setup({ preemptiveGeneration: false });
    first.mic.speak(400);
    first.turns.transcript(final('tell me', 0, 400));
    first.mic.speak(200);
    const saved = first.effects.saved!;
    first.turns.stop();
    expect(saved.finals).toEqual(['tell me']);

    const next = setup({ preemptiveGeneration: false }, saved);
    expect(next.turns.transcriptsAfterMs).toBe(400);
    next.mic.tsMs = 600;
    next.mic.speak(200);
    next.turns.transcript(final('a joke', 400, 800));
    next.mic.quiet(600);
    expect(next.effects.turns.map((t) => t.text)).toEqual(['tell me a joke']);
  });
});

describe('ending a turn before the recogniser’s final (fake clock)', () => {
  beforeEach(() => void vi.useFakeTimers({ now: 1_000_000 }));
  afterEach(() => void vi.useRealTimers());
  const stablePartial = (text: string, startMs: number, endMs: number): Transcript => ({
    ...final(text, startMs, endMs),
    final: false,
    stable: true,
  });

  it('ends on a stable partial that sounds finished; the same words in the final change nothing', () => {
    const { effects, turns, mic } = setup({ preemptiveGeneration: false, earlyEndMinScore: 0.8 });
    mic.speak(600);
    turns.transcript(stablePartial('what time is it', 0, 600));
    mic.quiet(300);
    expect(effects.log).toEqual(['vad start 0', 'turn end "what time is it"']); // no final yet
    turns.transcript(final('What time is it?', 0, 600));
    mic.quiet(300);
    expect(effects.turns.map((t) => `${t.kind} ${t.text}`)).toEqual(['end what time is it']);
    expect(effects.log.filter((l) => l.startsWith('cancel'))).toEqual([]);
    expect(turns.transcriptsAfterMs).toBe(600); // the final was taken as the turn's, not as new words
  });

  it('replaces the turn when the final’s words differ: cancelled, and a new turn with the final’s words', () => {
    const { effects, turns, mic } = setup({ preemptiveGeneration: false, earlyEndMinScore: 0.8 });
    mic.speak(600);
    turns.transcript(final('hello', 0, 200));
    turns.transcript(stablePartial('what time is it', 300, 600));
    mic.quiet(300);
    const first = effects.turns[0]!;
    expect(first.text).toBe('hello what time is it');
    turns.transcript(final('what time was it', 300, 600));
    expect(effects.log.slice(-2)).toEqual(['cancel final-revised', 'turn end "hello what time was it"']);
    const second = effects.turns[1]!;
    expect(second.turnId).not.toBe(first.turnId);
    expect(turns.agentTurn).toBe(second.turnId);
    mic.quiet(300);
    expect(effects.turns).toHaveLength(2);
  });

  it('waits for the final when the partial is unsure, unstable, or the model not confident enough', () => {
    for (const [partial, minScore] of [
      [stablePartial('i would like a table for', 0, 600), 0.8], // sounds unfinished
      [{ ...stablePartial('what time is it', 0, 600), stable: false }, 0.8], // still changing
      [stablePartial('what time is it', 0, 600), 1.1], // early ends off
    ] as const) {
      const { effects, turns, mic } = setup({ preemptiveGeneration: false, earlyEndMinScore: minScore });
      mic.speak(600);
      turns.transcript(partial);
      mic.quiet(500);
      expect(effects.turns, partial.text).toEqual([]);
      turns.transcript(final(partial.text, 0, 600));
      mic.quiet(1500);
      expect(effects.turns.map((t) => t.text)).toEqual([partial.text]);
    }
  });

  it('keeps a turn ended early when the user has spoken again before its different final came', () => {
    const { effects, turns, mic } = setup({ preemptiveGeneration: false, earlyEndMinScore: 0.8 });
    mic.speak(600);
    turns.transcript(stablePartial('what time is it', 0, 600));
    mic.quiet(300);
    mic.speak(400);
    turns.transcript(final('what time was it', 0, 600));
    expect(effects.log.filter((l) => l.startsWith('cancel final-revised'))).toEqual([]);
    turns.transcript(final('in london', 900, 1300));
    mic.quiet(400);
    expect(effects.turns.filter((t) => t.kind === 'end').map((t) => t.text)).toEqual(['what time is it', 'in london']);
  });
});
