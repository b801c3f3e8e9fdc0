import { StreamResampler } from '@va/audio';
import type { AudioChunk } from '../types.js';

/** Samples at the recogniser's rate, with the span of the input chunk they came from on the audio clock. */
export interface TimedSamples {
  samples: Int16Array;
  /** The input chunk's `tsMs`, or the end of the chunk before it when it has none. */
  startMs: number;
  endMs: number;
}

/**
 * An STT input at `rate`: chunks at another rate are resampled (one resampler per input rate, keeping its filter
 * state across chunks), and a chunk that resamples to nothing yet is skipped. The resampler is freed however the
 * iteration ends (input end or error, or the consumer breaking out).
 */
export async function* resampledInput(audio: AsyncIterable<AudioChunk>, rate: number): AsyncGenerator<TimedSamples> {
  let resampler: StreamResampler | undefined;
  let nextMs = 0;
  try {
    for await (const chunk of audio) {
      const startMs = chunk.tsMs ?? nextMs;
      const endMs = startMs + (chunk.samples.length * 1000) / chunk.sampleRate;
      nextMs = endMs;
      let samples = chunk.samples;
      if (chunk.sampleRate !== rate) {
        if (resampler?.fromRate !== chunk.sampleRate) {
          resampler?.destroy();
          resampler = await StreamResampler.create(chunk.sampleRate, rate);
        }
        samples = resampler.push(samples);
      }
      if (samples.length > 0) yield { samples, startMs, endMs };
    }
  } finally {
    resampler?.destroy();
  }
}
