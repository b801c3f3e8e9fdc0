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
    if (this.utterances.length === 0) return state.nowMs - since >= LEAD_IN_MS;
    const turn = this.script.turns[this.turn - 1]!;
    const waited = state.nowMs - since;
    const next = this.script.turns[this.turn];
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
  const out = micSilence(frameSamples, seed);
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

/**
 * A real-time clock: calls `step(i)` every `frameMs`, correcting drift against the monotonic clock, until
 * `step` returns false or the signal fires.
 */
export async function runClock(frameMs: number, step: (i: number) => boolean, signal: AbortSignal): Promise<number> {
  const start = performance.now();
  let i = 0;
  while (!signal.aborted && step(i)) {
    i++;
    // A timer can fire a little early (the event loop's cached clock is stale after a busy turn): wait out the rest,
    // so a frame is never stepped before its time.
    for (let wait = start + i * frameMs - performance.now(); wait > 0; wait = start + i * frameMs - performance.now()) {
      await new Promise((r) => setTimeout(r, Math.ceil(wait)));
    }
  }
  return i;
}
