import { describe, expect, it } from 'vitest';
import type { AudioFrame, Reply, SpeechDone } from '@va/protocol';
import { FakeTTS, type SpeechChunk, type TTS } from '@va/providers';
import { context } from '@va/telemetry';
import { synthesizeAll } from '../src/actor.js';
import { MAX_SPOKEN_CHARS, SessionSpeaker, TTS_DEFAULTS, type SessionSpeakerIo } from '../src/session-speaker.js';
import type { SpeechProgress } from '../src/turn-speaker.js';

/** Everything a session's voice sent, without a bus. */
class RecordedIo implements SessionSpeakerIo {
  readonly sessionId = 's1';
  readonly sampleRate = 16000;
  readonly frames: AudioFrame[] = [];
  readonly speeches: SpeechDone[] = [];
  readonly ended: string[] = [];
  readonly dropped: string[] = [];
  readonly fillers: string[] = [];
  readonly work: Promise<void>[] = [];
  private readonly signals = new Map<string, AbortController>();
  constructor(private readonly tts: TTS) {}
  audio(frame: AudioFrame): void {
    this.frames.push(frame);
  }
  speech(done: SpeechDone): void {
    this.speeches.push(done);
  }
  failed(turnId: string, err: unknown): void {
    throw new Error(`unexpected failure of ${turnId}: ${String(err)}`);
  }
  filler(_turnId: string, text: string): void {
    this.fillers.push(text);
  }
  turnSignal(turnId: string): AbortSignal {
    let c = this.signals.get(turnId);
    if (!c) this.signals.set(turnId, (c = new AbortController()));
    return c.signal;
  }
  cancel(turnId: string): void {
    this.signals.get(turnId)?.abort(new Error('cancelled'));
  }
  endTurn(turnId: string): void {
    this.ended.push(turnId);
  }
  track(work: Promise<void>): void {
    this.work.push(work);
  }
  textDropped(source: string): void {
    this.dropped.push(source);
  }
  readonly progresses: SpeechProgress[] = [];
  progress(_turnId: string, sent: SpeechProgress): void {
    this.progresses.push(structuredClone(sent));
  }
  readonly fillerVoices: (string | undefined)[] = [];
  fillerAudio(text: string, voice?: string): Promise<SpeechChunk[]> {
    this.fillerVoices.push(voice);
    return synthesizeAll(this.tts, text, voice);
  }
  /** Waits until every turn started so far has been spoken. */
  async settled(): Promise<void> {
    await Promise.all(this.work);
  }
  /** The sources of the frames sent, with runs collapsed: ['fast', 'deep'] = the opener, then the answer. */
  get order(): string[] {
    return this.frames.map((f) => f.source!).filter((s, i, all) => s !== all[i - 1]);
  }
}

const root = context.active();
const reply = (turnId: string, seq: number, delta: string, done = false): Reply => ({ turnId, seq, delta, done });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function setup(tts: TTS = new FakeTTS({ msPerChar: 5 }), options = {}) {
  const io = new RecordedIo(tts);
  const voice = new SessionSpeaker(tts, { ...TTS_DEFAULTS, fillerAfterMs: 40, ...options }, io);
  return { io, voice };
}

describe('SessionSpeaker / TurnSpeaker (tts per session, without NATS)', () => {
  it('speaks the opener, then the answer, never overlapping, and says what each spoke', async () => {
    const { io, voice } = setup();
    voice.turn({ turnId: 't1', kind: 'end', text: 'hi', eouProb: 1, speechEndMs: 0 });
    voice.reply('fast', reply('t1', 0, 'Sure.', true), root);
    await sleep(20);
    voice.reply('deep', reply('t1', 0, 'It is ten past four.'), root);
    voice.reply('deep', reply('t1', 1, '', true), root);
    await io.settled();
    expect(io.order).toEqual(['fast', 'deep']);
    expect(io.speeches.map((s) => [s.source, s.text, s.skipped])).toEqual([
      ['fast', 'Sure.', false],
      ['deep', 'It is ten past four.', false],
    ]);
    expect(io.ended).toEqual(['t1']);
  });

  it('a successor speaks on from where its predecessor’s audio stopped: every word once, frames in sequence', async () => {
    const answer = 'The first sentence. The second one. And a third.';
    // The predecessor speaks the turn; what it kept after the answer's first sentence is what it left behind.
    const first = setup();
    first.voice.turn({ turnId: 't1', kind: 'end', text: 'hi', eouProb: 1, speechEndMs: 0 });
    first.voice.reply('fast', reply('t1', 0, 'Sure.', true), root);
    first.voice.reply('deep', reply('t1', 0, 'The first sentence. The second'), root);
    first.voice.reply('deep', reply('t1', 1, ' one. And a third.'), root);
    first.voice.reply('deep', reply('t1', 2, '', true), root);
    await first.io.settled();
    const left = first.io.progresses.find((p) => p.sentTo.deep === 'The first sentence.'.length)!;
    expect(left, JSON.stringify(first.io.progresses)).toBeDefined();
    expect(left.sentTo.fast).toBe('Sure.'.length);
    const sentBefore = first.io.frames.filter((f) => f.seq < left.seq);

    // The successor: the replies so far from the responders, then live deltas (one it already has, the end).
    const next = setup();
    next.voice.resume(
      't1',
      left,
      {
        fast: { text: 'Sure.', nextSeq: 1, done: true },
        deep: { text: 'The first sentence. The second', nextSeq: 1, done: false },
      },
      root,
    );
    next.voice.reply('deep', reply('t1', 0, 'The first sentence. The second'), root); // a duplicate: dropped
    next.voice.reply('deep', reply('t1', 1, ' one. And a third.'), root);
    next.voice.reply('deep', reply('t1', 2, '', true), root);
    await next.io.settled();

    const heard = [...sentBefore, ...next.io.frames].map((f) => f.text ?? '').join('');
    expect(heard).toBe(`Sure.${answer}`);
    expect(next.io.order).toEqual(['deep']);
    expect(next.io.frames[0]!.seq).toBe(left.seq);
    expect(next.io.frames[0]!.tsMs).toBe(left.audioMs);
    expect(next.io.speeches.map((s) => [s.source, s.text])).toEqual([
      ['fast', 'Sure.'],
      ['deep', answer],
    ]);
  });

  it('skips the opener when the answer has audio before the opener has any text', async () => {
    const { io, voice } = setup();
    voice.reply('deep', reply('t1', 0, 'Four o clock.', true), root);
    await sleep(50);
    voice.reply('fast', reply('t1', 0, 'Sure.', true), root);
    await io.settled();
    expect(io.order).toEqual(['deep']);
    expect(io.speeches.find((s) => s.source === 'fast')).toMatchObject({ skipped: true, frames: 0 });
  });

  it('an agent turn (a greeting) is its answer alone: no opener awaited, no filler before it', async () => {
    const { io, voice } = setup(new FakeTTS({ msPerChar: 5 }), { fillers: ['One moment.'] });
    voice.turn({ turnId: 'g1', kind: 'agent', text: 'Hello, how can I help?', eouProb: 1, speechEndMs: 0 });
    await sleep(100); // longer than fillerAfterMs: a turn without opener text is not "late"
    voice.reply('deep', reply('g1', 0, 'Hello, how can I help?', true), root);
    await io.settled();
    expect(io.order).toEqual(['deep']);
    expect(io.fillers).toEqual([]);
    expect(io.speeches.map((s) => [s.source, s.text, s.frames > 0])).toEqual([
      ['fast', '', false],
      ['deep', 'Hello, how can I help?', true],
    ]);
  });

  it('speaks in the session agent’s voice (the opener, the answer, the fillers); a handoff’s voice from its next turn', async () => {
    const tts = new FakeTTS({ msPerChar: 5 });
    const { io, voice } = setup(tts, { fillers: ['One moment.'] });
    voice.voice = 'nova';
    voice.turn({ turnId: 'v1', kind: 'end', text: 'hi', eouProb: 1, speechEndMs: 0 });
    voice.reply('fast', reply('v1', 0, 'Sure.', true), root);
    await sleep(150); // late: a filler, in the agent's voice too
    voice.reply('deep', reply('v1', 0, 'Here it is.', true), root);
    await io.settled();
    expect(tts.voices).toEqual(['nova', 'nova', 'nova']); // the opener, the answer, the filler
    expect(io.fillerVoices).toEqual(['nova']);
    voice.voice = 'onyx'; // handed over
    voice.turn({ turnId: 'v2', kind: 'end', text: 'and', eouProb: 1, speechEndMs: 0 });
    voice.reply('deep', reply('v2', 0, 'Billing here.', true), root);
    voice.reply('fast', reply('v2', 0, '', true), root);
    await io.settled();
    expect(tts.voices.slice(3)).toEqual(['onyx', 'onyx']);
  });

  it('says one filler while the answer is late, but not over a user who is speaking', async () => {
    const { io, voice } = setup(new FakeTTS({ msPerChar: 5 }), { fillers: ['One moment.'] });
    voice.turn({ turnId: 't1', kind: 'end', text: 'hi', eouProb: 1, speechEndMs: 0 });
    voice.reply('fast', reply('t1', 0, 'Ok.', true), root);
    await sleep(150); // the opener's 15 ms of audio, then more than 40 ms of silence
    voice.reply('deep', reply('t1', 0, 'Here it is.', true), root);
    await io.settled();
    expect(io.order).toEqual(['fast', 'filler', 'deep']);
    expect(io.fillers).toEqual(['One moment.']);
    // What each frame says: the opener's, the filler's and the answer's words, each in its own frames.
    const says = (source: string) =>
      io.frames
        .filter((f) => f.source === source)
        .map((f) => f.text ?? '')
        .join('');
    expect(['fast', 'filler', 'deep'].map(says)).toEqual(['Ok.', 'One moment.', 'Here it is.']);

    voice.vad({ kind: 'start', atMs: 0 });
    voice.turn({ turnId: 't2', kind: 'end', text: 'and', eouProb: 1, speechEndMs: 0 });
    voice.reply('fast', reply('t2', 0, 'Ok.', true), root);
    await sleep(150);
    voice.reply('deep', reply('t2', 0, 'Sure.', true), root);
    await io.settled();
    expect(io.fillers).toHaveLength(1);
  });

  it('a new turn supersedes the one still speaking; late deltas of a finished turn are ignored', async () => {
    const { io, voice } = setup();
    voice.reply('deep', reply('t1', 0, 'A long answer that goes on.'), root);
    voice.reply('deep', reply('t2', 0, 'The next one.', true), root);
    voice.reply('fast', reply('t2', 0, '', true), root);
    await io.settled();
    expect(io.ended).toEqual(['t1', 't2']);
    voice.reply('deep', reply('t1', 1, ' More.', true), root);
    expect(io.work).toHaveLength(2);
  });

  it('bounds what one source may speak, and counts what it drops; duplicates are skipped', async () => {
    const { io, voice } = setup(new FakeTTS({ msPerChar: 1 }));
    voice.reply('fast', reply('t1', 0, '', true), root);
    voice.reply('deep', reply('t1', 0, 'x'.repeat(MAX_SPOKEN_CHARS - 5)), root);
    voice.reply('deep', reply('t1', 0, 'duplicate'), root);
    voice.reply('deep', reply('t1', 1, 'abcdefghij', true), root);
    await io.settled();
    const deep = io.speeches.find((s) => s.source === 'deep')!;
    expect(deep.text).toBe('x'.repeat(MAX_SPOKEN_CHARS - 5) + 'abcde');
    expect(io.dropped).toEqual(['deep']);
  });

  it('stops sending when the turn is cancelled', async () => {
    const tts = new FakeTTS({ msPerChar: 5, rtf: 0.5 });
    const { io, voice } = setup(tts, { fillers: [] });
    voice.reply('fast', reply('t1', 0, '', true), root);
    voice.reply('deep', reply('t1', 0, 'One. Two. Three. Four. Five. Six.', true), root);
    await sleep(30);
    io.cancel('t1');
    const sent = io.frames.length;
    await io.settled();
    expect(io.frames.length).toBe(sent);
    expect(io.speeches.filter((s) => s.source === 'deep')).toEqual([]);
  });
});
