import type { AgentStore } from '@va/agents';
import type { Bus } from '@va/bus';
import type { Admission } from '../admission.js';
import { openGatewaySession, RESUME_GRACE_MS, resumeGatewaySession, SessionGoneError } from '../open-session.js';
import { PIPELINE_RATE } from './audio.js';
import type { SessionFactory } from './room.js';

export interface BusSessionOptions {
  /** Opens each session on every stage, or refuses it when some stage is full. */
  admission: Admission;
  language?: string;
  /** Agent profiles, and the agent the room's sessions run (unset: the stored `default`). */
  agents?: AgentStore;
  agent?: string;
  /** How long a session left by a stopping gateway waits to be resumed by another (GATEWAY_RESUME_GRACE_MS). */
  resumeGraceMs?: number;
}

/**
 * The real `SessionFactory`: opens the session on every stage (openGatewaySession, as every transport does);
 * closing it ends open turns and closes the session on the bus. Refused (SessionRefusedError) when the pipeline is
 * full: the participant is not served, the room goes on.
 */
export function busSessionFactory(bus: Bus, opts: BusSessionOptions): SessionFactory {
  return async (sessionId, identity) => {
    // A participant's session id is the same on every gateway (room + identity): one whose gateway died is taken
    // up where it was (history, agent, turn state); otherwise a new one is opened.
    const resumed = await resumeGatewaySession(bus, sessionId, { log: { identity } }).catch((err: unknown) => {
      if (err instanceof SessionGoneError) return undefined;
      throw err;
    });
    const opened =
      resumed ??
      (await openGatewaySession(bus, sessionId, {
        admission: opts.admission,
        sampleRate: PIPELINE_RATE,
        ...(opts.language ? { language: opts.language } : {}),
        log: { identity },
        ...(opts.agents ? { agents: opts.agents } : {}),
        ...(opts.agent ? { agent: opts.agent } : {}),
      }));
    return {
      tick: (mic) => opened.session.tick(mic),
      close: () => opened.close('participant left'),
      // Not awaited: the grace runs out (and closes a session no instance took up) only while this process lives;
      // after it, the turn detector closes an orphan.
      detach: async () => void opened.detach(opts.resumeGraceMs ?? RESUME_GRACE_MS, 'gateway stopping'),
    };
  };
}
