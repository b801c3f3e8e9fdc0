import { TurnId, SUBJECT_TOKEN } from './ids.js';

/**
 * Audio frames travel as raw PCM16 little-endian mono bytes (no JSON, no base64); their metadata rides in
 * NATS headers so a relay can route them without touching the payload.
 */
export const AUDIO_HEADERS = {
  seq: 'va-seq',
  ts: 'va-ts',
  rate: 'va-rate',
  turn: 'va-turn',
  source: 'va-source',
  textOffset: 'va-text-offset',
} as const;

export const SAMPLE_RATES = [8000, 16000, 24000, 48000] as const;
export type SampleRate = (typeof SAMPLE_RATES)[number];
/**
 * Which voice of a turn a frame belongs to: the fast opener, a filler spoken while the answer is late, or the
 * deep answer. Played in that order, never overlapping.
 */
export const AUDIO_SOURCES = ['fast', 'filler', 'deep'] as const;
export type AudioSource = (typeof AUDIO_SOURCES)[number];

/** One frame is at most 200 ms: larger frames defeat the latency we are here for. */
export const MAX_FRAME_MS = 200;

export interface AudioFrame {
  /** PCM16 mono samples. */
  samples: Int16Array;
  sampleRate: SampleRate;
  /** Monotonic per stream; a gap means a lost frame. */
  seq: number;
  /** Start of the frame on the sender's audio clock, ms. */
  tsMs: number;
  /** Set on agent audio (audio.out): which turn, which responder, and how far into the text this frame is. */
  turnId?: string;
  source?: AudioSource;
  textOffset?: number;
}

export interface EncodedFrame {
  data: Uint8Array;
  headers: Record<string, string>;
}

export class AudioFrameError extends Error {
  override readonly name = 'AudioFrameError';
}

export function frameDurationMs(frame: Pick<AudioFrame, 'samples' | 'sampleRate'>): number {
  return (frame.samples.length * 1000) / frame.sampleRate;
}

export function encodeAudioFrame(frame: AudioFrame): EncodedFrame {
  checkFrame(frame.sampleRate, frame.samples.length * 2);
  const headers: Record<string, string> = {
    [AUDIO_HEADERS.seq]: String(frame.seq),
    [AUDIO_HEADERS.ts]: String(frame.tsMs),
    [AUDIO_HEADERS.rate]: String(frame.sampleRate),
  };
  if (frame.turnId !== undefined) headers[AUDIO_HEADERS.turn] = TurnId.parse(frame.turnId);
  if (frame.source !== undefined) headers[AUDIO_HEADERS.source] = frame.source;
  if (frame.textOffset !== undefined) headers[AUDIO_HEADERS.textOffset] = String(frame.textOffset);
  // Copy into a fresh little-endian buffer: an Int16Array view may be offset into a larger buffer
  // and is host-endian.
  const data = new Uint8Array(frame.samples.length * 2);
  const view = new DataView(data.buffer);
  for (let i = 0; i < frame.samples.length; i++) view.setInt16(i * 2, frame.samples[i]!, true);
  return { data, headers };
}

/** Decodes a frame from its payload and a header lookup; throws AudioFrameError on anything malformed. */
export function decodeAudioFrame(data: Uint8Array, header: (name: string) => string | undefined): AudioFrame {
  const rate = Number(header(AUDIO_HEADERS.rate));
  if (!SAMPLE_RATES.includes(rate as SampleRate)) {
    throw new AudioFrameError(`bad ${AUDIO_HEADERS.rate} header: ${String(header(AUDIO_HEADERS.rate))}`);
  }
  const sampleRate = rate as SampleRate;
  checkFrame(sampleRate, data.byteLength);
  const seq = intHeader(header, AUDIO_HEADERS.seq);
  const tsMs = Number(header(AUDIO_HEADERS.ts));
  if (!Number.isFinite(tsMs) || tsMs < 0) throw new AudioFrameError(`bad ${AUDIO_HEADERS.ts} header`);
  const samples = new Int16Array(data.byteLength / 2);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  for (let i = 0; i < samples.length; i++) samples[i] = view.getInt16(i * 2, true);
  const frame: AudioFrame = { samples, sampleRate, seq, tsMs };
  const turn = header(AUDIO_HEADERS.turn);
  if (turn !== undefined) {
    if (!SUBJECT_TOKEN.test(turn)) throw new AudioFrameError(`bad ${AUDIO_HEADERS.turn} header`);
    frame.turnId = turn;
  }
  const source = header(AUDIO_HEADERS.source);
  if (source !== undefined) {
    if (!(AUDIO_SOURCES as readonly string[]).includes(source))
      throw new AudioFrameError(`bad ${AUDIO_HEADERS.source} header`);
    frame.source = source as AudioSource;
  }
  if (header(AUDIO_HEADERS.textOffset) !== undefined) frame.textOffset = intHeader(header, AUDIO_HEADERS.textOffset);
  return frame;
}

function intHeader(header: (name: string) => string | undefined, name: string): number {
  const raw = header(name);
  const n = Number(raw);
  if (raw === undefined || raw === '' || !Number.isSafeInteger(n) || n < 0) {
    throw new AudioFrameError(`bad ${name} header: ${String(raw)}`);
  }
  return n;
}

function checkFrame(sampleRate: number, bytes: number): void {
  if (bytes === 0) throw new AudioFrameError('empty audio frame');
  if (bytes % 2 !== 0) throw new AudioFrameError(`PCM16 frame has an odd byte count (${bytes})`);
  const ms = (bytes / 2 / sampleRate) * 1000;
  if (ms > MAX_FRAME_MS) throw new AudioFrameError(`audio frame of ${ms.toFixed(0)} ms exceeds ${MAX_FRAME_MS} ms`);
}
