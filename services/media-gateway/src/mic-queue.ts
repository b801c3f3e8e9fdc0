import { BoundedBuffer } from '@va/stream';
import { ATTR, counter, METRIC } from '@va/telemetry';
import { STAGE } from './actor.js';

/**
 * A session's microphone frames waiting for the gateway's next 20 ms tick, whatever transport they came in on: at
 * most `maxFrames` (a client sending faster than real time, or a stalled tick, loses the oldest, counted in
 * `va.audio.dropped{va.drop_reason=mic-queue-full}`).
 */
export class MicQueue extends BoundedBuffer<Int16Array> {
  constructor(maxFrames: number) {
    super({
      capacity: maxFrames,
      onDrop: () => counter(METRIC.audioDropped).add(1, { [ATTR.stage]: STAGE, [ATTR.dropReason]: 'mic-queue-full' }),
    });
  }

  /** The oldest frame, if one is waiting. */
  take(): Int16Array | undefined {
    return this.shift();
  }

  get queued(): number {
    return this.size;
  }
}
