import { PROSODY_WINDOW_MS, SpeakerPitch, type SpeechTail } from '@va/providers';

/** Audio kept past the prosody window: the quiet frames the pause is confirmed on come after the speech. */
const MARGIN_MS = 300;

/**
 * The session's latest microphone audio, by audio time: what an end-of-utterance model that listens reads of the
 * speech before a pause (`before(endMs)`). A ring of PROSODY_WINDOW_MS + a margin; a gap in the audio or a new
 * sample rate starts it over. Each tail carries the session's speaker: the model learns the speaker's pitch range
 * from the tails it reads.
 */
export class RecentAudio {
  readonly speaker = new SpeakerPitch();
  private ring = new Int16Array(0);
  private sampleRate = 0;
  /** Samples held (≤ ring length), the next write position, and the audio time just after the newest sample. */
  private held = 0;
  private write = 0;
  private endMs = -1;

  push(tsMs: number, samples: Int16Array, sampleRate: number): void {
    const contiguous = sampleRate === this.sampleRate && Math.abs(tsMs - this.endMs) < 1;
    if (!contiguous) {
      if (sampleRate !== this.sampleRate) {
        this.sampleRate = sampleRate;
        this.ring = new Int16Array(Math.ceil(((PROSODY_WINDOW_MS + MARGIN_MS) / 1000) * sampleRate));
      }
      this.held = 0;
      this.write = 0;
    }
    const cap = this.ring.length;
    const src = samples.length > cap ? samples.subarray(samples.length - cap) : samples;
    const first = Math.min(src.length, cap - this.write);
    this.ring.set(src.subarray(0, first), this.write);
    this.ring.set(src.subarray(first), 0);
    this.write = (this.write + src.length) % cap;
    this.held = Math.min(cap, this.held + src.length);
    this.endMs = tsMs + (samples.length * 1000) / sampleRate;
  }

  /** A copy of up to PROSODY_WINDOW_MS of audio ending at `endMs`; undefined when none of it is held. */
  before(endMs: number): SpeechTail | undefined {
    if (this.held === 0 || endMs > this.endMs + 1) return undefined;
    const skip = Math.round(((this.endMs - endMs) / 1000) * this.sampleRate);
    const take = Math.min(Math.round((PROSODY_WINDOW_MS / 1000) * this.sampleRate), this.held - skip);
    if (take <= 0) return undefined;
    const cap = this.ring.length;
    const start = (this.write - skip - take + 2 * cap) % cap;
    const out = new Int16Array(take);
    const first = Math.min(take, cap - start);
    out.set(this.ring.subarray(start, start + first));
    out.set(this.ring.subarray(0, take - first), first);
    return { samples: out, sampleRate: this.sampleRate, speaker: this.speaker };
  }
}
