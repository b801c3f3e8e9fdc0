// The microphone in the audio thread: downsamples the context's rate (usually 48 kHz) to 16 kHz, converts to
// PCM16 and posts one 20 ms frame (320 samples) at a time to the page, which sends it to the gateway as is.

const OUT_RATE = 16000;
const FRAME = 320;

class MicProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    /** Input samples per output sample (3 at 48 kHz, 2.75625 at 44.1 kHz). */
    this.step = sampleRate / OUT_RATE;
    /** Input not yet consumed, and where in it the next output sample starts (fractional). */
    this.pending = new Float32Array(0);
    this.pos = 0;
    this.frame = new Int16Array(FRAME);
    this.filled = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    const input = new Float32Array(this.pending.length + channel.length);
    input.set(this.pending);
    input.set(channel, this.pending.length);
    let pos = this.pos;
    while (pos + this.step <= input.length) {
      // Anti-aliasing the cheap way: each output sample is the mean of the input samples it stands for (a box
      // filter over one output period), good enough for speech into a recogniser.
      const from = Math.floor(pos);
      const to = Math.max(from + 1, Math.floor(pos + this.step));
      let sum = 0;
      for (let i = from; i < to; i++) sum += input[i];
      const v = Math.max(-1, Math.min(1, sum / (to - from)));
      this.frame[this.filled++] = v < 0 ? Math.round(v * 0x8000) : Math.round(v * 0x7fff);
      if (this.filled === FRAME) {
        this.port.postMessage(this.frame.buffer, [this.frame.buffer]);
        this.frame = new Int16Array(FRAME);
        this.filled = 0;
      }
      pos += this.step;
    }
    const used = Math.floor(pos);
    this.pending = input.slice(used);
    this.pos = pos - used;
    return true;
  }
}

registerProcessor('mic-16k', MicProcessor);
