// The package is CommonJS without named-export hints: take its default export.
import libsamplerate from '@alexanderolsen/libsamplerate-js';

const { ConverterType, create } = libsamplerate;
type SRC = Awaited<ReturnType<typeof create>>;
import { float32ToInt16, int16ToFloat32, type Pcm } from './pcm.js';

/** Whole-buffer resampling (libsamplerate, sinc quality). */
export async function resample(pcm: Pcm, toRate: number): Promise<Pcm> {
  if (pcm.sampleRate === toRate) return pcm;
  const src = await create(1, pcm.sampleRate, toRate, { converterType: ConverterType.SRC_SINC_MEDIUM_QUALITY });
  try {
    return { samples: float32ToInt16(src.simple(int16ToFloat32(pcm.samples))), sampleRate: toRate };
  } finally {
    src.destroy();
  }
}

/** Streaming resampler: keeps filter state across frames so frame edges do not click. */
export class StreamResampler {
  private constructor(
    private readonly src: SRC | undefined,
    readonly fromRate: number,
    readonly toRate: number,
  ) {}

  static async create(fromRate: number, toRate: number): Promise<StreamResampler> {
    const src =
      fromRate === toRate
        ? undefined
        : await create(1, fromRate, toRate, { converterType: ConverterType.SRC_SINC_FASTEST });
    return new StreamResampler(src, fromRate, toRate);
  }

  push(samples: Int16Array): Int16Array {
    if (!this.src) return samples;
    return float32ToInt16(this.src.full(int16ToFloat32(samples)));
  }

  destroy(): void {
    this.src?.destroy();
  }
}
