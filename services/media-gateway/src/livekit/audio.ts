import { AudioFrame, AudioResampler, AudioResamplerQuality, AudioSource, LocalAudioTrack } from '@livekit/rtc-node';
import { Framer } from '@va/audio';
import { FRAME_MS } from '@va/protocol';

/** The pipeline's rate and frame: 16 kHz mono, 20 ms = 320 samples. */
export const PIPELINE_RATE = 16000 as const;
export const PIPELINE_FRAME_SAMPLES = (PIPELINE_RATE * FRAME_MS) / 1000;

/** One microphone frame for the gateway: `seq` counts frames from the stream's start, `tsMs = seq * 20`. */
export interface MicFrame {
  samples: Int16Array;
  seq: number;
  tsMs: number;
}

/** Averages interleaved channels to mono. */
export function downmix(frame: AudioFrame): Int16Array {
  if (frame.channels === 1) return frame.data.subarray(0, frame.samplesPerChannel);
  const out = new Int16Array(frame.samplesPerChannel);
  for (let i = 0; i < out.length; i++) {
    let sum = 0;
    for (let c = 0; c < frame.channels; c++) sum += frame.data[i * frame.channels + c]!;
    out[i] = Math.round(sum / frame.channels);
  }
  return out;
}

/**
 * The user side: frames of a remote track at whatever rate and channel count it gives (48 kHz stereo from a
 * browser, usually) → 16 kHz mono 20 ms frames. Resamples with the SDK's resampler (libsoxr), recreated if
 * the track's rate changes mid-stream.
 */
export class MicConverter {
  private resampler: AudioResampler | undefined;
  private inputRate = 0;
  private readonly framer = new Framer(PIPELINE_FRAME_SAMPLES);
  private seq = 0;

  push(frame: AudioFrame): MicFrame[] {
    const mono = downmix(frame);
    if (frame.sampleRate === PIPELINE_RATE) return this.frames(mono);
    if (frame.sampleRate !== this.inputRate) {
      const tail = this.resampler?.flush() ?? [];
      this.resampler?.close();
      this.resampler = new AudioResampler(frame.sampleRate, PIPELINE_RATE, 1, AudioResamplerQuality.MEDIUM);
      this.inputRate = frame.sampleRate;
      const out = tail.flatMap((f) => this.frames(f.data.subarray(0, f.samplesPerChannel)));
      return out.concat(this.resample(mono));
    }
    return this.resample(mono);
  }

  private resample(mono: Int16Array): MicFrame[] {
    const input = new AudioFrame(mono, this.inputRate, 1, mono.length);
    return this.resampler!.push(input).flatMap((f) => this.frames(f.data.subarray(0, f.samplesPerChannel)));
  }

  /** The resampler's tail (a few ms), as whole frames; the remainder under one frame is dropped. */
  flush(): MicFrame[] {
    const tail = this.resampler?.flush() ?? [];
    return tail.flatMap((f) => this.frames(f.data.subarray(0, f.samplesPerChannel)));
  }

  /** 20 ms frames, numbered from the stream's start (`tsMs = seq * 20`). */
  private frames(samples: Int16Array): MicFrame[] {
    return this.framer.push(samples).map((f) => ({ samples: f, seq: this.seq, tsMs: this.seq++ * FRAME_MS }));
  }

  close(): void {
    this.resampler?.close();
    this.resampler = undefined;
    this.inputRate = 0;
  }
}

/** Turns a remote track's frames (e.g. an `AudioStream`) into 16 kHz 20 ms microphone frames. */
export async function* micFrames(frames: AsyncIterable<AudioFrame>): AsyncGenerator<MicFrame> {
  const converter = new MicConverter();
  try {
    for await (const frame of frames) yield* converter.push(frame);
    yield* converter.flush();
  } finally {
    converter.close();
  }
}

/** What the agent side needs of an `AudioSource` (a fake in tests). */
export interface AudioSourceLike {
  readonly sampleRate: number;
  captureFrame(frame: AudioFrame): Promise<void>;
  clearQueue(): void;
  close(): Promise<void>;
}

/** A 16 kHz mono `AudioSource` for the agent's voice. */
export function newAgentSource(): AudioSource {
  // 1 s of queue: the gateway paces playout itself, so the queue stays near empty; it only absorbs jitter.
  return new AudioSource(PIPELINE_RATE, 1, 1000);
}

/** The track that publishes an agent source (it must be a real `AudioSource`). */
export function agentTrack(name: string, source: AudioSourceLike): LocalAudioTrack {
  if (!(source instanceof AudioSource)) throw new Error('a LiveKit track needs an AudioSource from @livekit/rtc-node');
  return LocalAudioTrack.createAudioTrack(name, source);
}

/**
 * The agent side: one 20 ms frame per tick from `GatewaySession.tick` (16 kHz) into the source. Silence is
 * captured too (the tick returns undefined), so the track's timeline runs at the gateway's clock; a capture
 * that fails (source closed) is reported once and the frames after it dropped.
 */
export class AgentVoice {
  private failed = false;
  private pending = 0;
  private chain: Promise<void> = Promise.resolve();
  private readonly silence = new Int16Array(PIPELINE_FRAME_SAMPLES);

  constructor(
    private readonly source: AudioSourceLike,
    private readonly onError: (err: unknown) => void = () => {},
  ) {
    if (source.sampleRate !== PIPELINE_RATE) throw new Error(`agent audio source must run at ${PIPELINE_RATE} Hz`);
  }

  /** Captures one frame after the ones before it (the SDK's captures are awaited one at a time). */
  play(samples: Int16Array | undefined): void {
    if (this.failed) return;
    const data = samples ?? this.silence;
    const frame = new AudioFrame(data, PIPELINE_RATE, 1, data.length);
    this.pending++;
    this.chain = this.chain
      .then(() => (this.failed ? undefined : this.source.captureFrame(frame)))
      .catch((err: unknown) => {
        if (this.failed) return;
        this.failed = true;
        this.onError(err);
      })
      .finally(() => void this.pending--);
  }

  /** Frames handed to `play` and not yet accepted by the source. */
  get backlog(): number {
    return this.pending;
  }

  /** Resolves when every frame played so far has been captured (or dropped after a failure). */
  drained(): Promise<void> {
    return this.chain;
  }

  /** Drops what is queued but not yet sent (an interruption). */
  clear(): void {
    this.source.clearQueue();
  }
}
