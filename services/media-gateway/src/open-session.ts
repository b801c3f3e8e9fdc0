import { ActorContext, closeSession } from '@va/actor';
import type { AgentStore } from '@va/agents';
import type { Bus } from '@va/bus';
import { BUCKETS, type SampleRate, type SessionId } from '@va/protocol';
import type { Logger } from '@va/telemetry';
import type { Admission } from './admission.js';
import { GatewaySession, STAGE } from './actor.js';

/** A session the gateway holds for one transport connection (a socket, a participant, a recording). */
export interface OpenedSession {
  readonly sessionId: SessionId;
  readonly ctx: ActorContext;
  readonly session: GatewaySession;
  readonly log: Logger;
  /** Ends open turns, closes the session on every stage (`reason` in `session.close`), releases the context. */
  close(reason: string): void;
}

export interface OpenSessionOptions {
  /** Opens the session on every stage, or refuses it (SessionRefusedError) when the pipeline is full. */
  admission: Admission;
  sampleRate: SampleRate;
  language?: string;
  /** Log fields of this session besides its id (transport, identity). */
  log?: Record<string, unknown>;
  /** Where agent profiles are read; without it the stages run their built-in agent. */
  agents?: AgentStore;
  /** The agent to run (`va_agents`); unset: the stored `default`, if any. An unknown name: UnknownAgentError. */
  agent?: string;
}

/**
 * The one place a gateway session starts, whatever the transport: the agent it runs (resolved from `va_agents`),
 * admission (every stage claims it, or it is refused), the gateway's own actor context following `control`, and
 * the `GatewaySession` that paces its audio.
 */
export async function openGatewaySession(
  bus: Bus,
  sessionId: SessionId,
  opts: OpenSessionOptions,
): Promise<OpenedSession> {
  // The agent goes to every stage in session.open: a session keeps the version it started with.
  const agent = await opts.agents?.resolve(opts.agent);
  const log = bus.log.child({ sessionId, ...opts.log, ...(agent ? { agent: `${agent.name}@${agent.version}` } : {}) });
  const acks = await opts.admission.open(sessionId, {
    sampleRate: opts.sampleRate,
    ...(agent
      ? { agent, ...(agent.persona ? { persona: agent.persona } : {}), ...(agent.turn ? { turn: agent.turn } : {}) }
      : {}),
  });
  log.info({ stages: acks.map((a) => `${a.stage}@${a.instanceId}`) }, 'session opened');
  const config = { sampleRate: opts.sampleRate, language: opts.language ?? 'en-US' };
  const ctx = new ActorContext(sessionId, config, STAGE, bus, await bus.kv(BUCKETS.state), false, log);
  ctx.followControl();
  const session = new GatewaySession(ctx, opts.sampleRate, { greeting: agent?.greeting !== undefined });
  let closed = false;
  return {
    sessionId,
    ctx,
    session,
    log,
    close: (reason) => {
      if (closed) return;
      closed = true;
      session.close();
      closeSession(bus, sessionId, reason);
      ctx.close('closed');
    },
  };
}
