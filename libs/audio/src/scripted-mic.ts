import { concat, dither, type Pcm } from './pcm.js';
import { resample } from './resample.js';

/** One user turn of a script (the shape of `ConversationScript`'s turns in @va/protocol, defaults applied). */
export interface ScriptTurnPlan {
  say?: string;
  noiseMs?: number;
  pauseMs: number;
  waitForAgent: boolean;
  interruptAfterMs?: number;
}

/** What speaks the script's words (a TTS provider). */
export interface Synthesizer {
  readonly sampleRate: number;
  synthesize(text: AsyncIterable<string>, signal: AbortSignal): AsyncIterable<{ samples: Int16Array }>;
}

/** Distinct frames of comfort noise made once per frame size, handed out in turn. */
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
    private readonly script: { turns: ScriptTurnPlan[] },
    private readonly speech: Int16Array[],
    private readonly sampleRate: number,
  ) {}

  /** Synthesizes the script once; each call of the result is a fresh microphone (one per session). */
  static async prepare(
    script: { turns: ScriptTurnPlan[] },
    tts: Synthesizer,
    sampleRate: number,
  ): Promise<() => ScriptMic> {
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
