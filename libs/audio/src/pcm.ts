/** Mono PCM16 audio at a known rate: the unit every stage passes around. */
export interface Pcm {
  samples: Int16Array;
  sampleRate: number;
}

export function durationMs(pcm: Pcm): number {
  return (pcm.samples.length * 1000) / pcm.sampleRate;
}

export function samplesForMs(ms: number, sampleRate: number): number {
  return Math.round((ms * sampleRate) / 1000);
}

export function silence(ms: number, sampleRate: number): Pcm {
  return { samples: new Int16Array(samplesForMs(ms, sampleRate)), sampleRate };
}

export function concat(parts: readonly Pcm[], sampleRate = parts[0]?.sampleRate ?? 16000): Pcm {
  if (parts.some((p) => p.sampleRate !== sampleRate)) throw new Error('concat: sample rates differ');
  const out = new Int16Array(parts.reduce((n, p) => n + p.samples.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p.samples, at);
    at += p.samples.length;
  }
  return { samples: out, sampleRate };
}

/** Splits into frames of `frameMs`; the last frame is shorter when the audio does not divide evenly. */
export function frames(pcm: Pcm, frameMs = 20): Pcm[] {
  const size = samplesForMs(frameMs, pcm.sampleRate);
  const out: Pcm[] = [];
  for (let i = 0; i < pcm.samples.length; i += size) {
    out.push({ samples: pcm.samples.slice(i, i + size), sampleRate: pcm.sampleRate });
  }
  return out;
}

/**
 * Re-chunks a stream of arbitrary-length PCM into fixed frames (e.g. 512 samples for Silero, 20 ms for the
 * wire): the one reframer of the codebase. Takes samples or PCM16 little-endian bytes (a socket's chunks, which
 * may split a sample); keeps the remainder between pushes; `flush()` returns it.
 */
export class Framer {
  private buf: Int16Array;
  private len = 0;
  /** The first byte of a sample split across two byte pushes. */
  private oddByte: number | undefined;

  constructor(readonly frameSamples: number) {
    this.buf = new Int16Array(frameSamples);
  }

  /** Samples waiting for a whole frame. */
  get buffered(): number {
    return this.len;
  }

  /** PCM16 little-endian bytes, in chunks of any size. */
  pushBytes(bytes: Uint8Array): Int16Array[] {
    let start = 0;
    let lead: Int16Array | undefined;
    if (this.oddByte !== undefined && bytes.length > 0) {
      const v = this.oddByte | (bytes[0]! << 8);
      lead = Int16Array.of(v >= 0x8000 ? v - 0x10000 : v);
      this.oddByte = undefined;
      start = 1;
    }
    const whole = (bytes.length - start) & ~1;
    const samples = new Int16Array(whole / 2);
    const view = new DataView(bytes.buffer, bytes.byteOffset + start, whole);
    for (let i = 0; i < samples.length; i++) samples[i] = view.getInt16(i * 2, true);
    if (start + whole < bytes.length) this.oddByte = bytes[start + whole]!;
    return lead ? [...this.push(lead), ...this.push(samples)] : this.push(samples);
  }

  push(samples: Int16Array): Int16Array[] {
    const out: Int16Array[] = [];
    let i = 0;
    while (i < samples.length) {
      const n = Math.min(this.frameSamples - this.len, samples.length - i);
      this.buf.set(samples.subarray(i, i + n), this.len);
      this.len += n;
      i += n;
      if (this.len === this.frameSamples) {
        out.push(this.buf);
        this.buf = new Int16Array(this.frameSamples);
        this.len = 0;
      }
    }
    return out;
  }

  flush(): Int16Array | undefined {
    if (this.len === 0) return undefined;
    const rest = this.buf.slice(0, this.len);
    this.len = 0;
    return rest;
  }
}

/** Root-mean-square level in dBFS (−Infinity for digital silence). */
export function rmsDbfs(samples: Int16Array): number {
  if (samples.length === 0) return -Infinity;
  let sum = 0;
  for (const s of samples) sum += s * s;
  const rms = Math.sqrt(sum / samples.length) / 32768;
  return rms === 0 ? -Infinity : 20 * Math.log10(rms);
}

/**
 * Adds a little triangular dither. Digital-zero silence upsets recognisers' normalisers (pocketsphinx
 * among them); real microphones never produce it. Deterministic for a given seed so tests repeat.
 */
export function dither(samples: Int16Array, amplitude = 4, seed = 1): Int16Array {
  let x = seed >>> 0 || 1;
  const rand = () => {
    // xorshift32: cheap, deterministic, good enough for noise.
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x100000000;
  };
  const out = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i++) {
    const v = samples[i]! + Math.round((rand() - rand()) * amplitude);
    out[i] = Math.max(-32768, Math.min(32767, v));
  }
  return out;
}

export function int16ToFloat32(samples: Int16Array): Float32Array {
  const out = new Float32Array(samples.length);
  for (let i = 0; i < samples.length; i++) out[i] = samples[i]! / 32768;
  return out;
}

export function float32ToInt16(samples: Float32Array): Int16Array {
  const out = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i++) {
    const v = Math.max(-1, Math.min(1, samples[i]!));
    out[i] = Math.round(v < 0 ? v * 32768 : v * 32767);
  }
  return out;
}
