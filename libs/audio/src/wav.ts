import { decodeWaveToFloat32Channels, encodeWaveFromFloat32Channels } from '@echogarden/wave-codec';
import { float32ToInt16, int16ToFloat32, type Pcm } from './pcm.js';

/** Reads a WAV file's bytes as mono PCM16: channel 0 of a multi-channel file (a fake mic is 2 ch). */
export function readWav(bytes: Uint8Array): Pcm {
  const { audioChannels, sampleRate } = decodeWaveToFloat32Channels(bytes);
  const first = audioChannels[0];
  if (!first) throw new Error('WAV has no audio channels');
  return { samples: float32ToInt16(first), sampleRate };
}

/** Writes mono PCM16 as a 16-bit WAV. */
export function writeWav(pcm: Pcm): Uint8Array {
  return writeWavChannels([pcm.samples], pcm.sampleRate);
}

/** Writes several PCM16 tracks as one multi-channel WAV (shorter tracks are padded with silence). */
export function writeWavChannels(tracks: readonly Int16Array[], sampleRate: number): Uint8Array {
  const length = Math.max(0, ...tracks.map((t) => t.length));
  const channels = tracks.map((t) => {
    const padded = new Int16Array(length);
    padded.set(t);
    return int16ToFloat32(padded);
  });
  return encodeWaveFromFloat32Channels(channels, sampleRate, 16);
}
