import type { AgentStore } from '@va/agents';
import type { Bus } from '@va/bus';
import type { Admission } from '../admission.js';
import { openGatewaySession } from '../open-session.js';
import { PIPELINE_RATE } from './audio.js';
import type { SessionFactory } from './room.js';

export interface BusSessionOptions {
  /** Opens each session on every stage, or refuses it when some stage is full. */
  admission: Admission;
  language?: string;
  /** Agent profiles, and the agent the room's sessions run (unset: the stored `default`). */
  agents?: AgentStore;
  agent?: string;
}

/**
 * The real `SessionFactory`: opens the session on every stage (openGatewaySession, as every transport does);
 * closing it ends open turns and closes the session on the bus. Refused (SessionRefusedError) when the pipeline is
 * full: the participant is not served, the room goes on.
 */
export function busSessionFactory(bus: Bus, opts: BusSessionOptions): SessionFactory {
  return async (sessionId, identity) => {
    const opened = await openGatewaySession(bus, sessionId, {
      admission: opts.admission,
      sampleRate: PIPELINE_RATE,
      ...(opts.language ? { language: opts.language } : {}),
      log: { identity },
      ...(opts.agents ? { agents: opts.agents } : {}),
      ...(opts.agent ? { agent: opts.agent } : {}),
    });
    return {
      tick: (mic) => opened.session.tick(mic),
      close: () => opened.close('participant left'),
    };
  };
}
