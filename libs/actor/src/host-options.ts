import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { SessionId } from '@va/protocol';
import type { Bus } from '@va/bus';
import type { Logger } from '@va/telemetry';
import type { ActorContext, StopReason } from './context.js';
import type { LoadMonitor } from './load.js';

/** Per-session behaviour of a stage. Everything it needs comes through its context. */
export interface SessionActor {
  /** Called when the session ends here; the context's signals have already fired. */
  stop?(reason: StopReason): void | Promise<void>;
}

export type ActorFactory = (ctx: ActorContext) => SessionActor | Promise<SessionActor>;

export interface ActorHostOptions {
  stage: string;
  bus: Bus;
  createActor: ActorFactory;
  /** Sessions this instance will hold; at capacity it leaves the session.open queue group. */
  capacity?: number;
  /** How often this instance proves it is alive. */
  heartbeatMs?: number;
  /** Silence after which an instance is taken for dead and its sessions are re-claimed. */
  leaseMs?: number;
  /** How long a graceful handover waits for a turn in flight. */
  handoverTimeoutMs?: number;
  instanceId?: string;
  version?: string;
  logger?: Logger;
  /**
   * This process's load: while it is over its limits the instance claims no new session (it leaves the
   * session.open queue group), as at capacity. Sessions it holds, and those of dead peers, are still served.
   */
  load?: LoadMonitor;
}

/** Defaults: a killed instance's sessions are owned again within about leaseMs + heartbeatMs. */
export const ACTOR_HOST_DEFAULTS = {
  capacity: 100,
  heartbeatMs: 500,
  leaseMs: 1500,
  handoverTimeoutMs: 10_000,
  version: '0.1.0',
} as const satisfies Partial<ActorHostOptions>;

/** The options an ActorHost runs with: every tunable set (the defaults where the caller left one out). */
export type ResolvedHostOptions = Required<Omit<ActorHostOptions, 'logger' | 'instanceId' | 'load'>>;

export function resolveHostOptions(options: ActorHostOptions): ResolvedHostOptions {
  return { ...ACTOR_HOST_DEFAULTS, ...stripUndefined(options) } as ResolvedHostOptions;
}

export interface ClaimEvent {
  sessionId: SessionId;
  reclaimed: boolean;
}
export interface ReleaseEvent {
  sessionId: SessionId;
  reason: StopReason;
}

/** A unique, subject-safe id for this process. */
export function newInstanceId(): string {
  const host = hostname()
    .replace(/[^A-Za-z0-9_-]/g, '-')
    .slice(0, 32);
  return `${host}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
