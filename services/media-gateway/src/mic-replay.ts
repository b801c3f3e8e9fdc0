import { AUDIO_REPLAY_MAX_BYTES, FRAME_MS, type AudioReplayReply } from '@va/protocol';

/**
 * The newest microphone frames a session sent (by seq, at most AUDIO_REPLAY_MAX_BYTES): what an stt instance that
 * took the session over had not heard yet (`audio.replay`).
 */
export class MicReplayRing {
  private readonly frames: { seq: number; samples: Int16Array }[] = [];
  private bytes = 0;

  /** Keeps a copy of frame `seq` (the transport may reuse its buffer for the next frame). */
  add(seq: number, samples: Int16Array): void {
    this.frames.push({ seq, samples: samples.slice() });
    this.bytes += samples.byteLength;
    // Trimmed in batches (a tenth over the bound), not a shift per frame.
    if (this.bytes <= AUDIO_REPLAY_MAX_BYTES * 1.1) return;
    let drop = 0;
    while (this.bytes > AUDIO_REPLAY_MAX_BYTES) this.bytes -= this.frames[drop++]!.samples.byteLength;
    this.frames.splice(0, drop);
  }

  /** The audio from `fromMs` on, as far back as it is kept; frames are contiguous on the session clock. */
  replay(fromMs: number, nextSeq: number, sampleRate: number): AudioReplayReply {
    const fromSeq = Math.floor(fromMs / FRAME_MS);
    let start = this.frames.length;
    let bytes = 0;
    while (start > 0) {
      const f = this.frames[start - 1]!;
      if (f.seq < fromSeq || bytes + f.samples.byteLength > AUDIO_REPLAY_MAX_BYTES) break;
      bytes += f.samples.byteLength;
      start--;
    }
    const frames = this.frames.slice(start);
    const seq = frames[0]?.seq ?? nextSeq;
    const pcm = Buffer.concat(
      frames.map((f) => Buffer.from(f.samples.buffer, f.samples.byteOffset, f.samples.byteLength)),
    );
    return { fromMs: seq * FRAME_MS, sampleRate: sampleRate as 16000, seq, nextSeq, pcm: pcm.toString('base64') };
  }
}
