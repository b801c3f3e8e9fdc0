import { ATTR, counter, METRIC } from '@va/telemetry';
import { STAGE } from './actor.js';

/**
 * A session's microphone frames waiting for the gateway's next 20 ms tick, whatever transport they came in on: at
 * most `maxFrames` (a client sending faster than real time, or a stalled tick, loses the oldest, counted in
 * `va.audio.dropped{va.drop_reason=mic-queue-full}`).
 */
export class MicQueue {
  private readonly frames: Int16Array[] = [];
  dropped = 0;

  constructor(private readonly maxFrames: number) {}

  push(frame: Int16Array): void {
    this.frames.push(frame);
    if (this.frames.length <= this.maxFrames) return;
    this.frames.shift();
    this.dropped++;
    counter(METRIC.audioDropped).add(1, { [ATTR.stage]: STAGE, [ATTR.dropReason]: 'mic-queue-full' });
  }

  /** The oldest frame, if one is waiting. */
  take(): Int16Array | undefined {
    return this.frames.shift();
  }

  get queued(): number {
    return this.frames.length;
  }
}
