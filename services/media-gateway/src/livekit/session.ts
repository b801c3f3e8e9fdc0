import { ActorContext, closeSession } from '@va/actor';
import type { Admission } from '../admission.js';
import type { Bus } from '@va/bus';
import { BUCKETS } from '@va/protocol';
import { GatewaySession, STAGE } from '../actor.js';
import { PIPELINE_RATE } from './audio.js';
import type { SessionFactory } from './room.js';

export interface BusSessionOptions {
  /** Opens each session on every stage, or refuses it when some stage is full. */
  admission: Admission;
  language?: string;
}

/**
 * The real `SessionFactory`: opens the session on every stage (as the file transport does), and returns its
 * `GatewaySession`; closing it ends open turns and closes the session on the bus.
 */
export function busSessionFactory(bus: Bus, opts: BusSessionOptions): SessionFactory {
  return async (sessionId, identity) => {
    const log = bus.log.child({ sessionId, identity });
    // Refused (SessionRefusedError) when the pipeline is full: the participant is not served, the room goes on.
    await opts.admission.open(sessionId, { sampleRate: PIPELINE_RATE });
    log.info('session opened');
    const config = { sampleRate: PIPELINE_RATE, language: opts.language ?? 'en-US' };
    const ctx = new ActorContext(sessionId, config, STAGE, bus, await bus.kv(BUCKETS.state), false, log);
    ctx.followControl();
    const session = new GatewaySession(ctx, PIPELINE_RATE);
    return {
      tick: (mic) => session.tick(mic),
      close: () => {
        session.close();
        closeSession(bus, sessionId, 'participant left');
        ctx.close('closed');
      },
    };
  };
}
