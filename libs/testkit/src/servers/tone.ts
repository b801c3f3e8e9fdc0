/** One Hann-shaped tone burst per letter or digit, a gap for anything else (code points, like the speech). */
export function toneFor(text: string, msPerChar: number, rate: number, hz = 220): Int16Array {
  const per = Math.round((msPerChar * rate) / 1000);
  const chars = Array.from(text);
  const out = new Int16Array(per * chars.length);
  chars.forEach((ch, c) => {
    if (!/[\p{L}\p{N}]/u.test(ch)) return;
    for (let k = 0; k < per; k++) {
      const n = c * per + k;
      const envelope = 0.5 - 0.5 * Math.cos((2 * Math.PI * k) / per);
      out[n] = Math.round(0.3 * 32767 * envelope * Math.sin((2 * Math.PI * hz * n) / rate));
    }
  });
  return out;
}

/** The bytes of 16-bit samples, as s16le PCM goes on the wire (no copy). */
export function pcmBytes(samples: Int16Array): Buffer {
  return Buffer.from(samples.buffer, samples.byteOffset, samples.byteLength);
}
