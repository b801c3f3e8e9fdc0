/** Raw little-endian PCM16 bytes, split anywhere (odd lengths too), to samples. */
export class Pcm16Decoder {
  private odd: number | undefined;

  push(bytes: Uint8Array): Int16Array {
    const total = bytes.length + (this.odd === undefined ? 0 : 1);
    const out = new Int16Array(total >> 1);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let i = 0;
    let n = 0;
    if (this.odd !== undefined && bytes.length > 0) {
      out[n++] = (((bytes[0]! << 8) | this.odd) << 16) >> 16;
      this.odd = undefined;
      i = 1;
    }
    for (; i + 1 < bytes.length; i += 2) out[n++] = view.getInt16(i, true);
    if (i < bytes.length) this.odd = bytes[i];
    return out;
  }
}
