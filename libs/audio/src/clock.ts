/**
 * Maps a stream's audio clock to the wall clock. Live audio arrives in real time, so the newest frame's end
 * anchors both: an audio time is that many ms before or after the moment the newest frame arrived.
 */
export class FrameClock {
  /** Audio time at the end of the newest frame, and the wall time (epoch ms) it arrived. */
  private endMs = 0;
  private arrivedAt = Date.now();

  /** Records a frame that starts at `tsMs` on the audio clock and lasts `samples / sampleRate`. */
  observe(tsMs: number, samples: number, sampleRate: number): void {
    this.endMs = tsMs + (samples * 1000) / sampleRate;
    this.arrivedAt = Date.now();
  }

  /** Audio time at the end of the newest frame. */
  get latestMs(): number {
    return this.endMs;
  }

  /** Wall time (epoch ms) at which audio time `tsMs` was (or will be) live. */
  wallOf(tsMs: number): number {
    return this.arrivedAt - (this.endMs - tsMs);
  }

  /** The audio clock now, extrapolated from the newest frame. */
  now(): number {
    return this.endMs + (Date.now() - this.arrivedAt);
  }

  /**
   * How far the stream has been heard: the newest frame's end, plus at most `aheadMs` while frames keep coming.
   * A consumer that falls behind (frames queued, not yet processed) must not count the unheard audio as silence;
   * once no frame has come for `stallMs` the input has stopped, and the wall clock is the only clock left.
   */
  heard(aheadMs: number, stallMs: number): number {
    const since = Date.now() - this.arrivedAt;
    return this.endMs + (since >= stallMs ? since : Math.min(since, aheadMs));
  }
}
