import { ActorContext, closeSession, openSession } from '@va/actor';
import type { Bus } from '@va/bus';
import { BUCKETS, STAGES } from '@va/protocol';
import { GatewaySession, STAGE } from '../actor.js';
import { PIPELINE_RATE } from './audio.js';
import type { SessionFactory } from './room.js';

export interface BusSessionOptions {
  /** How long to wait for the other stages to claim a new session. */
  openTimeoutMs: number;
  language?: string;
}

/**
 * The real `SessionFactory`: opens the session on every stage (as the file transport does), and returns its
 * `GatewaySession`; closing it ends open turns and closes the session on the bus.
 */
export function busSessionFactory(bus: Bus, opts: BusSessionOptions): SessionFactory {
  return async (sessionId, identity) => {
    const log = bus.log.child({ sessionId, identity });
    const others = STAGES.filter((s) => s !== STAGE);
    const acks = await openSession(
      bus,
      sessionId,
      { sampleRate: PIPELINE_RATE },
      { stages: others, timeoutMs: opts.openTimeoutMs },
    );
    const missing = others.filter((s) => !acks.some((a) => a.stage === s));
    if (missing.length > 0) log.warn({ missing }, 'stages did not claim the session in time; they will when they can');
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
