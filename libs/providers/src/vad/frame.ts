import type { VAD } from '../types.js';

/** A VAD's state depends on frame timing, so a wrong-sized frame is a caller bug: fail loudly, never pad. */
export function checkFrame(vad: VAD, frame: Int16Array): void {
  if (frame.length !== vad.frameSamples) {
    throw new RangeError(
      `${vad.provider} VAD: frame must be ${vad.frameSamples} samples at ${vad.sampleRate} Hz, got ${frame.length}` +
        ' (re-chunk with Framer)',
    );
  }
}
