import { concat, dither, resample, type Pcm } from '@va/audio';
import type { TTS } from '@va/providers';
import { z } from 'zod';
import { micSilence } from './actor.js';

/**
 * `{"turns":[{"say":"text","pauseMs":1200}]}`: user turns in order. After each, the user waits until the
 * agent has finished answering and then stays silent `pauseMs` more, as a person would; with
 * `"waitForAgent": false` the pause starts right after the utterance (run-on turns). A turn with
 * `"interruptAfterMs": N` starts N ms after the agent's first audio of the previous turn, over the agent
 * (a barge-in).
 */
export const Script = z.object({
  turns: z
    .array(
      z
        .object({
          /** Words the user speaks; or, with `noiseMs`, a cough (a noise burst with no words) instead. */
          say: z.string().min(1).max(2000).optional(),
          noiseMs: z.number().int().positive().max(5000).optional(),
          pauseMs: z.number().int().nonnegative().max(60_000).default(1200),
          waitForAgent: z.boolean().default(true),
          interruptAfterMs: z.number().int().nonnegative().max(60_000).optional(),
        })
        .refine((t) => (t.say === undefined) !== (t.noiseMs === undefined), {
          message: 'a script turn has either "say" or "noiseMs"',
        }),
    )
    .min(1)
    .max(100),
});
export type Script = z.infer<typeof Script>;

/** Where each scripted utterance was played in the microphone audio (session clock, ms). */
export interface ScriptedUtterance {
  say: string;
  startMs: number;
  endMs: number;
}

/** What a microphone source needs to know of the conversation to pace itself. */
export interface ConversationState {
  /** Session clock, ms. */
  nowMs: number;
  /** No user turn open and no agent answer pending or playing. */
  idle: boolean;
  /** Session-clock time of the last user speech or agent audio. */
  lastActivity: number;
  /** Session-clock time the latest agent turn's first audio played, if any has. */
  agentTurnStartMs?: number;
}

/** A microphone: one frame per tick, or null when it has nothing more to say. */
export interface MicSource {
  next(frameSamples: number, state: ConversationState): Int16Array | null;
  readonly utterances: ScriptedUtterance[];
}

/** Silence before the first utterance: lets every stage settle, as a person would pause before talking. */
const LEAD_IN_MS = 600;
/** A scripted user never waits longer than this for the agent before speaking again. */
const MAX_WAIT_FOR_AGENT_MS = 30_000;

/** Plays a recorded microphone (a WAV file) from start to end. */
export class WavMic implements MicSource {
  readonly utterances: ScriptedUtterance[] = [];
  private at = 0;
  constructor(private readonly pcm: Pcm) {}

  next(frameSamples: number): Int16Array | null {
    if (this.at >= this.pcm.samples.length) return null;
    const frame = padTo(this.pcm.samples.slice(this.at, this.at + frameSamples), frameSamples);
    this.at += frameSamples;
    return frame;
  }
}

/** Speaks a script (the user's voice is the local TTS's), pausing for the agent between turns. */
export class ScriptMic implements MicSource {
  readonly utterances: ScriptedUtterance[] = [];
  private turn = 0;
  private at = 0;
  private waitingSince: number | undefined = 0;
  private noise = 1;

  private constructor(
    private readonly script: Script,
    private readonly speech: Int16Array[],
    private readonly sampleRate: number,
  ) {}

  /** Synthesizes the script once; each call of the result is a fresh microphone (one per session). */
  static async prepare(script: Script, tts: TTS, sampleRate: number): Promise<() => ScriptMic> {
    const speech: Int16Array[] = [];
    for (const turn of script.turns) {
      if (turn.say === undefined) {
        speech.push(cough(turn.noiseMs ?? 0, sampleRate, speech.length + 11));
        continue;
      }
      const chunks: Int16Array[] = [];
      for await (const c of tts.synthesize(single(turn.say), new AbortController().signal)) chunks.push(c.samples);
      const pcm = await resample(
        concat(chunks.map((samples) => ({ samples, sampleRate: tts.sampleRate }))),
        sampleRate,
      );
      // Real microphones never give digital zero; recognisers' normalisers expect some noise.
      speech.push(dither(pcm.samples, 6, speech.length + 11));
    }
    return () => new ScriptMic(script, speech, sampleRate);
  }

  next(frameSamples: number, state: ConversationState): Int16Array | null {
    if (this.waitingSince !== undefined) {
      if (!this.pauseOver(state)) return micSilence(frameSamples, this.noise++);
      if (this.turn >= this.script.turns.length) return null;
      this.waitingSince = undefined;
      this.at = 0;
      this.utterances.push({ say: this.script.turns[this.turn]!.say ?? '', startMs: state.nowMs, endMs: state.nowMs });
    }
    const speech = this.speech[this.turn]!;
    const frame = padTo(speech.slice(this.at, this.at + frameSamples), frameSamples, this.noise++);
    this.at += frameSamples;
    this.utterances[this.utterances.length - 1]!.endMs = state.nowMs + (frameSamples * 1000) / this.sampleRate;
    if (this.at >= speech.length) {
      this.turn++;
      this.waitingSince = state.nowMs;
    }
    return frame;
  }

  private pauseOver(state: ConversationState): boolean {
    const since = this.waitingSince ?? 0;
    const waited = state.nowMs - since;
    const next = this.script.turns[this.turn];
    if (this.utterances.length === 0) {
      // An agent that speaks first (a greeting) is let finish, or talked over `interruptAfterMs` into it.
      if (next?.interruptAfterMs !== undefined && waited < MAX_WAIT_FOR_AGENT_MS) {
        const first = state.agentTurnStartMs;
        return first !== undefined && state.nowMs - first >= next.interruptAfterMs;
      }
      if (waited >= MAX_WAIT_FOR_AGENT_MS) return true;
      return waited >= LEAD_IN_MS && state.idle && state.nowMs - state.lastActivity >= LEAD_IN_MS;
    }
    const turn = this.script.turns[this.turn - 1]!;
    if (next?.interruptAfterMs !== undefined && waited < MAX_WAIT_FOR_AGENT_MS) {
      // Talk over the agent: N ms into its answer to the utterance just said.
      const first = state.agentTurnStartMs;
      return first !== undefined && first >= since && state.nowMs - first >= next.interruptAfterMs;
    }
    if (!turn.waitForAgent || waited >= MAX_WAIT_FOR_AGENT_MS) return waited >= turn.pauseMs;
    // Give the pipeline a moment to notice the turn before judging it idle.
    return waited >= 300 && state.idle && state.nowMs - Math.max(state.lastActivity, since) >= turn.pauseMs;
  }
}

/** A cough: a loud burst of noise, fast attack, decaying — sound with no words in it. */
function cough(ms: number, sampleRate: number, seed: number): Int16Array {
  const out = new Int16Array(Math.round((ms * sampleRate) / 1000));
  let x = seed >>> 0 || 1;
  for (let i = 0; i < out.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const envelope = Math.min(1, i / (0.01 * sampleRate)) * Math.exp((-3 * i) / out.length);
    out[i] = Math.round(((x >>> 0) / 0xffffffff - 0.5) * 2 * 12_000 * envelope);
  }
  return out;
}

function padTo(frame: Int16Array, frameSamples: number, seed = 3): Int16Array {
  if (frame.length === frameSamples) return frame;
  const out = micSilence(frameSamples, seed).slice();
  out.set(frame);
  return out;
}

async function* single(text: string): AsyncIterable<string> {
  yield text;
}

/** Records a track frame by frame on the session clock. */
export class TrackRecorder {
  private readonly chunks: Int16Array[] = [];
  private length = 0;

  /** Writes `samples` at frame index `frame` (frames of `frameSamples`); gaps stay silent. */
  write(frame: number, frameSamples: number, samples: Int16Array | undefined): void {
    const at = frame * frameSamples;
    if (at > this.length) {
      this.chunks.push(new Int16Array(at - this.length));
      this.length = at;
    }
    const s = samples ?? new Int16Array(frameSamples);
    this.chunks.push(s);
    this.length += s.length;
  }

  samples(): Int16Array {
    return concat(
      this.chunks.map((samples) => ({ samples, sampleRate: 1 })),
      1,
    ).samples;
  }
}

/** One session's place on a shared clock. */
interface Stepper {
  step: (i: number) => boolean;
  /** Monotonic time of its step 0, and the next step's index. */
  start: number;
  next: number;
  signal: AbortSignal;
  done: (steps: number) => void;
  fail: (err: unknown) => void;
}

/**
 * One timer for every session of the process: each tick steps every session whose next frame is due, in one
 * event-loop turn — so the frames of hundreds of sessions go out in one socket write, not one write and one
 * timer each. A session's step `i` never runs before `i × frameMs` after its step 0; a late tick catches up.
 */
export class FrameTicker {
  private readonly steppers = new Set<Stepper>();
  private timer: NodeJS.Timeout | undefined;
  /** Every session's steps fall on this grid, so one timer firing serves them all. */
  private origin: number | undefined;

  constructor(readonly frameMs: number) {}

  /** Steps `step(0)` now, then `step(1)`, … on the clock until it returns false or the signal fires. */
  run(step: (i: number) => boolean, signal: AbortSignal): Promise<number> {
    return new Promise((resolve, reject) => {
      if (signal.aborted || !step(0)) return resolve(0);
      // Step 0 now; the later ones on the grid, counted from when step 0 returned (never sooner than frameMs
      // after anything it saw).
      const now = performance.now();
      this.origin ??= now;
      const grid = this.origin + Math.ceil((now - this.origin) / this.frameMs) * this.frameMs;
      const s: Stepper = { step, start: grid, next: 1, signal, done: resolve, fail: reject };
      this.steppers.add(s);
      this.schedule();
    });
  }

  /** Runs the steps of `s` that are due; false (and `s` resolved) when it has finished. */
  private advance(s: Stepper, now: number): boolean {
    try {
      while (s.start + s.next * this.frameMs <= now) {
        if (s.signal.aborted || !s.step(s.next)) break;
        s.next++;
      }
    } catch (err) {
      // One session's failure is its own: it leaves the clock, the others keep their pace.
      s.fail(err);
      return false;
    }
    if (s.signal.aborted || s.start + s.next * this.frameMs <= now) {
      s.done(s.next);
      return false;
    }
    return true;
  }

  private schedule(): void {
    if (this.timer || this.steppers.size === 0) return;
    let due = Infinity;
    for (const s of this.steppers) due = Math.min(due, s.start + s.next * this.frameMs);
    // A timer can fire a little early (the event loop's cached clock is stale after a busy turn): it is
    // re-armed for the rest, so a frame is never stepped before its time.
    this.timer = setTimeout(() => this.tick(), Math.max(0, Math.ceil(due - performance.now())));
  }

  private tick(): void {
    this.timer = undefined;
    const now = performance.now();
    for (const s of this.steppers) if (!this.advance(s, now)) this.steppers.delete(s);
    this.schedule();
  }
}

const tickers = new Map<number, FrameTicker>();

/**
 * A real-time clock: calls `step(i)` every `frameMs` (step 0 at once), never early, until `step` returns false
 * or the signal fires; resolves with the number of steps taken. Sessions of one process share one timer.
 */
export function runClock(frameMs: number, step: (i: number) => boolean, signal: AbortSignal): Promise<number> {
  let ticker = tickers.get(frameMs);
  if (!ticker) tickers.set(frameMs, (ticker = new FrameTicker(frameMs)));
  return ticker.run(step, signal);
}
