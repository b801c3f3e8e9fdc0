import { randomBytes } from 'node:crypto';
import { ActorContext, closeSession, stateKey } from '@va/actor';
import type { AgentStore } from '@va/agents';
import type { Bus, BusSubscription, KV } from '@va/bus';
import { BUCKETS, channels, leaseKey, STAGES, type SampleRate, type SessionId } from '@va/protocol';
import type { Logger } from '@va/telemetry';
import type { Admission } from './admission.js';
import { GatewaySession, STAGE } from './actor.js';
import { PLAYING_STATE } from './playing-record.js';

/** A session the gateway holds for one transport connection (a socket, a participant, a recording). */
export interface OpenedSession {
  readonly sessionId: SessionId;
  readonly ctx: ActorContext;
  readonly session: GatewaySession;
  readonly log: Logger;
  /** Ends open turns, closes the session on every stage (`reason` in `session.close`), releases the context. */
  close(reason: string): void;
  /**
   * The transport connection was lost: releases it here, and closes the session on every stage after `graceMs`
   * unless it was resumed (on any instance) by then.
   */
  detach(graceMs: number, reason: string): Promise<void>;
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
  const stateKv = await bus.kv(BUCKETS.state);
  const ctx = new ActorContext(sessionId, config, STAGE, bus, stateKv, false, log);
  ctx.followControl();
  const session = new GatewaySession(ctx, opts.sampleRate, { greeting: agent?.greeting !== undefined });
  const attachment = newAttachment();
  // What another gateway instance needs to resume the session if this one dies (and who holds it now).
  await ctx.state.put(GATEWAY_STATE, {
    sampleRate: opts.sampleRate,
    startWall: session.startedAt,
    attachment,
  } satisfies GatewayState);
  return held(bus, stateKv, ctx, session, log, attachment);
}

/** Where a gateway keeps a session's clock and holder (va_state), for the instance that resumes it. */
const GATEWAY_STATE = 'gateway';

/** How long a session whose transport was lost (or left by a stopping gateway) waits to be resumed elsewhere. */
export const RESUME_GRACE_MS = 15_000;

export interface GatewayState {
  sampleRate: SampleRate;
  /** Wall time of the session clock's zero. */
  startWall: number;
  /** Which attachment (a socket on some instance) holds the session now: a later one supersedes it. */
  attachment: string;
}

/** The session is not there to resume: never opened here, or closed since. */
export class SessionGoneError extends Error {
  override readonly name = 'SessionGoneError';
}

/**
 * Takes over a session whose transport connection was lost (its gateway died, or the page's network dropped):
 * the stages still hold it; this attachment supersedes the last, and the session clock goes on from where it
 * was. The caller has checked that the asker may (a resume token).
 */
export async function resumeGatewaySession(
  bus: Bus,
  sessionId: SessionId,
  opts: { log?: Record<string, unknown> } = {},
): Promise<OpenedSession> {
  const log = bus.log.child({ sessionId, ...opts.log });
  const stateKv = await bus.kv(BUCKETS.state);
  const state = await savedState(stateKv, sessionId);
  if (!state) throw new SessionGoneError(`no session ${sessionId} to resume`);
  // The stages still hold it (a session closed meanwhile — e.g. no gateway for too long — has no lease left).
  const leases = await bus.kv(BUCKETS.leases);
  const stageLeases = await Promise.all(
    STAGES.filter((s) => s !== STAGE).map((s) => leases.get(leaseKey(s, sessionId)).catch(() => null)),
  );
  if (!stageLeases.some((e) => e?.operation === 'PUT')) {
    forget(bus, stateKv, sessionId);
    throw new SessionGoneError(`session ${sessionId} has ended`);
  }
  const config = { sampleRate: state.sampleRate, language: 'en-US' };
  const ctx = new ActorContext(sessionId, config, STAGE, bus, stateKv, false, log);
  ctx.followControl();
  const attachment = newAttachment();
  await ctx.state.put(GATEWAY_STATE, { ...state, attachment } satisfies GatewayState);
  const session = new GatewaySession(ctx, state.sampleRate, { startWall: state.startWall });
  log.info({ atMs: session.nowMs }, 'session resumed');
  return held(bus, stateKv, ctx, session, log, attachment);
}

function newAttachment(): string {
  return randomBytes(6).toString('hex');
}

/** A session held by this attachment: closing it closes it everywhere; detaching leaves it to be resumed. */
function held(
  bus: Bus,
  stateKv: KV,
  ctx: ActorContext,
  session: GatewaySession,
  log: Logger,
  attachment: string,
): OpenedSession {
  const { sessionId } = ctx;
  let closed = false;
  const release = () => {
    if (closed) return false;
    closed = true;
    session.close();
    ctx.close('closed');
    return true;
  };
  return {
    sessionId,
    ctx,
    session,
    log,
    close: (reason) => {
      if (!release()) return;
      closeSession(bus, sessionId, reason);
      forget(bus, stateKv, sessionId);
    },
    detach: async (graceMs, reason) => {
      if (!release()) return;
      // Lost, not ended: the page may come back (here or through another instance) within the grace period.
      await new Promise((r) => setTimeout(r, graceMs).unref());
      const holder = (await savedState(stateKv, sessionId).catch(() => undefined))?.attachment;
      if (holder !== attachment) return log.info({ holder }, 'session resumed elsewhere');
      log.info({ graceMs }, 'session not resumed in time: closed');
      closeSession(bus, sessionId, reason);
      forget(bus, stateKv, sessionId);
    },
  };
}

/** The gateway's state of a session, if it has one (not resumable without). */
async function savedState(stateKv: KV, sessionId: SessionId): Promise<GatewayState | undefined> {
  const e = await stateKv.get(stateKey(STAGE, sessionId, GATEWAY_STATE));
  return e?.operation === 'PUT' ? e.json<GatewayState>() : undefined;
}

/** A closed session's state goes: its resume state (a resume is refused from then on) and its playing record. */
function forget(bus: Bus, stateKv: KV, sessionId: SessionId): void {
  for (const name of [GATEWAY_STATE, PLAYING_STATE]) {
    void stateKv
      .delete(stateKey(STAGE, sessionId, name))
      .catch((err: unknown) => bus.log.warn({ err: String(err), sessionId }, 'gateway state not deleted'));
  }
}

/**
 * A session closed anywhere — above all an orphan the turn detector closed after its gateway died and nobody
 * resumed it — loses its gateway state too (one instance of the queue group deletes it): no entry outlives its
 * session.
 */
export async function forgetClosedSessions(bus: Bus): Promise<BusSubscription> {
  const stateKv = await bus.kv(BUCKETS.state);
  return bus.subscribeGlobal(channels.sessionClose, (m) => forget(bus, stateKv, m.sessionId), { queue: STAGE });
}
