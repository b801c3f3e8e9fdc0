import { SUBJECT_TOKEN } from './ids.js';

/**
 * Audio frames travel as one binary payload: a small little-endian header (sample rate, seq, audio clock, and on
 * agent audio the turn, source, text offset and the text the frame speaks) followed by raw PCM16 little-endian mono
 * samples — no JSON, no
 * base64, and no per-frame NATS headers to build and parse. Only the W3C trace context rides in NATS headers, as
 * on every message; it changes once a turn, so its encoded form is cached on both ends.
 *
 * Layout (version 1):
 *   0  u8   AUDIO_FORMAT_V1
 *   1  u8   flags (1: textOffset set, 2: text set)
 *   2  u16  header length H in bytes (even; samples start there; a longer header from a newer sender is skipped)
 *   4  u32  sample rate
 *   8  u32  seq
 *   12 f64  tsMs
 *   20 u32  textOffset (0 unless flagged)
 *   24 u8   source (index into AUDIO_SOURCES, 255 = none)
 *   25 u8   turn id length L (0 = none)
 *   26 L    turn id (ASCII, SUBJECT_TOKEN)
 *   then, if text is set: u16 byte length T, T bytes of UTF-8 text
 *   then one zero byte of padding if the header so far has an odd length
 */
export const AUDIO_FORMAT_V1 = 0xa1;
const FIXED_HEADER = 26;
const FLAG_TEXT_OFFSET = 1;
const FLAG_TEXT = 2;
/** The most text one frame can carry (UTF-8 bytes; the header length is a u16): more than a source's whole text. */
export const MAX_FRAME_TEXT_BYTES = 60_000;
const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder('utf-8', { fatal: true });
const NO_SOURCE = 255;
const LITTLE_ENDIAN_HOST = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

/** The header that says which turn a JSON message belongs to, so stale data can be dropped unparsed. */
export const TURN_HEADER = 'va-turn';

export const SAMPLE_RATES = [8000, 16000, 24000, 48000] as const;
export type SampleRate = (typeof SAMPLE_RATES)[number];
/**
 * Which voice of a turn a frame belongs to: the fast opener, a filler spoken while the answer is late, or the
 * deep answer. Played in that order, never overlapping.
 */
export const AUDIO_SOURCES = ['fast', 'filler', 'deep'] as const;
export type AudioSource = (typeof AUDIO_SOURCES)[number];
/** The two responders a turn's text comes from: the fast opener and the deep answer (`reply.fast`, `reply.deep`). */
export const RESPONDER_SOURCES = ['fast', 'deep'] as const satisfies readonly AudioSource[];
export type ResponderSource = (typeof RESPONDER_SOURCES)[number];

/** The microphone frame the gateway publishes on `audio.in` (and paces `audio.out` by): 20 ms. */
export const FRAME_MS = 20;
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
  /**
   * Agent audio: the text this frame's audio brings in — the source's text from the previous frame's `textOffset`
   * to this one's. In order, the frames of a source spell its text, so what was played is what was heard.
   */
  text?: string;
}

export class AudioFrameError extends Error {
  override readonly name = 'AudioFrameError';
}

export function frameDurationMs(frame: Pick<AudioFrame, 'samples' | 'sampleRate'>): number {
  return (frame.samples.length * 1000) / frame.sampleRate;
}

/** One frame as its wire payload (header + PCM16 LE). */
export function encodeAudioFrame(frame: AudioFrame): Uint8Array {
  const pcmBytes = frame.samples.length * 2;
  checkFrame(frame.sampleRate, pcmBytes);
  if (!SAMPLE_RATES.includes(frame.sampleRate)) throw new AudioFrameError(`bad sample rate ${frame.sampleRate}`);
  if (!Number.isSafeInteger(frame.seq) || frame.seq < 0 || frame.seq > 0xffffffff) {
    throw new AudioFrameError(`bad seq ${frame.seq}`);
  }
  if (!Number.isFinite(frame.tsMs) || frame.tsMs < 0) throw new AudioFrameError(`bad tsMs ${frame.tsMs}`);
  const turn = frame.turnId;
  if (turn !== undefined && !SUBJECT_TOKEN.test(turn)) throw new AudioFrameError(`bad turn id ${JSON.stringify(turn)}`);
  const turnLen = turn?.length ?? 0;
  const text = frame.text ? utf8.encode(frame.text) : undefined;
  if (text && text.byteLength > MAX_FRAME_TEXT_BYTES) {
    throw new AudioFrameError(`frame text of ${text.byteLength} bytes exceeds ${MAX_FRAME_TEXT_BYTES}`);
  }
  const textAt = FIXED_HEADER + turnLen;
  const headerLen = (textAt + (text ? 2 + text.byteLength : 0) + 1) & ~1;
  const out = new Uint8Array(headerLen + pcmBytes);
  const view = new DataView(out.buffer);
  view.setUint8(0, AUDIO_FORMAT_V1);
  view.setUint8(1, (frame.textOffset !== undefined ? FLAG_TEXT_OFFSET : 0) | (text ? FLAG_TEXT : 0));
  view.setUint16(2, headerLen, true);
  view.setUint32(4, frame.sampleRate, true);
  view.setUint32(8, frame.seq, true);
  view.setFloat64(12, frame.tsMs, true);
  if (frame.textOffset !== undefined) {
    if (!Number.isSafeInteger(frame.textOffset) || frame.textOffset < 0 || frame.textOffset > 0xffffffff) {
      throw new AudioFrameError(`bad textOffset ${frame.textOffset}`);
    }
    view.setUint32(20, frame.textOffset, true);
  }
  view.setUint8(24, frame.source !== undefined ? AUDIO_SOURCES.indexOf(frame.source) : NO_SOURCE);
  view.setUint8(25, turnLen);
  for (let i = 0; i < turnLen; i++) out[FIXED_HEADER + i] = turn!.charCodeAt(i);
  if (text) {
    view.setUint16(textAt, text.byteLength, true);
    out.set(text, textAt + 2);
  }
  if (LITTLE_ENDIAN_HOST) {
    out.set(new Uint8Array(frame.samples.buffer, frame.samples.byteOffset, pcmBytes), headerLen);
  } else {
    for (let i = 0; i < frame.samples.length; i++) view.setInt16(headerLen + i * 2, frame.samples[i]!, true);
  }
  return out;
}

/** Decodes a frame's payload; throws AudioFrameError on anything malformed. The samples are a fresh copy. */
export function decodeAudioFrame(data: Uint8Array): AudioFrame {
  if (data.byteLength === 0) throw new AudioFrameError('empty audio frame');
  if (data.byteLength < FIXED_HEADER)
    throw new AudioFrameError(`audio frame of ${data.byteLength} bytes has no header`);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  if (view.getUint8(0) !== AUDIO_FORMAT_V1) {
    throw new AudioFrameError(`unknown audio format 0x${view.getUint8(0).toString(16)}`);
  }
  const headerLen = view.getUint16(2, true);
  const turnLen = view.getUint8(25);
  if (headerLen < FIXED_HEADER + turnLen || headerLen > data.byteLength || headerLen % 2 !== 0) {
    throw new AudioFrameError(`bad audio header length ${headerLen}`);
  }
  const rate = view.getUint32(4, true);
  if (!SAMPLE_RATES.includes(rate as SampleRate)) throw new AudioFrameError(`bad sample rate ${rate}`);
  const sampleRate = rate as SampleRate;
  const pcmBytes = data.byteLength - headerLen;
  checkFrame(sampleRate, pcmBytes);
  const tsMs = view.getFloat64(12, true);
  if (!Number.isFinite(tsMs) || tsMs < 0) throw new AudioFrameError(`bad tsMs ${tsMs}`);
  const samples = new Int16Array(pcmBytes / 2);
  if (LITTLE_ENDIAN_HOST) {
    new Uint8Array(samples.buffer).set(data.subarray(headerLen));
  } else {
    for (let i = 0; i < samples.length; i++) samples[i] = view.getInt16(headerLen + i * 2, true);
  }
  const frame: AudioFrame = { samples, sampleRate, seq: view.getUint32(8, true), tsMs };
  if (turnLen > 0) {
    const turn = String.fromCharCode(...data.subarray(FIXED_HEADER, FIXED_HEADER + turnLen));
    if (!SUBJECT_TOKEN.test(turn)) throw new AudioFrameError(`bad turn id ${JSON.stringify(turn)}`);
    frame.turnId = turn;
  }
  const source = view.getUint8(24);
  if (source !== NO_SOURCE) {
    if (source >= AUDIO_SOURCES.length) throw new AudioFrameError(`bad source ${source}`);
    frame.source = AUDIO_SOURCES[source]!;
  }
  const flags = view.getUint8(1);
  if (flags & FLAG_TEXT_OFFSET) frame.textOffset = view.getUint32(20, true);
  if (flags & FLAG_TEXT) frame.text = decodeFrameText(data, view, FIXED_HEADER + turnLen, headerLen);
  return frame;
}

function decodeFrameText(data: Uint8Array, view: DataView, at: number, headerLen: number): string {
  const len = at + 2 <= headerLen ? view.getUint16(at, true) : -1;
  if (len < 0 || at + 2 + len > headerLen) throw new AudioFrameError('frame text overruns the header');
  try {
    return fromUtf8.decode(data.subarray(at + 2, at + 2 + len));
  } catch {
    throw new AudioFrameError('frame text is not UTF-8');
  }
}

function checkFrame(sampleRate: number, bytes: number): void {
  if (bytes === 0) throw new AudioFrameError('empty audio frame');
  if (bytes % 2 !== 0) throw new AudioFrameError(`PCM16 frame has an odd byte count (${bytes})`);
  const ms = (bytes / 2 / sampleRate) * 1000;
  if (ms > MAX_FRAME_MS) throw new AudioFrameError(`audio frame of ${ms.toFixed(0)} ms exceeds ${MAX_FRAME_MS} ms`);
}
