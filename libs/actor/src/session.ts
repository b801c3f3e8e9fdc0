import { createInbox } from '@nats-io/transport-node';
import { BUCKETS, channels, SessionConfig, SessionOpenAck, type SessionId } from '@va/protocol';
import { serverRelay, type Bus } from '@va/bus';
import type { z } from 'zod';
import type { StageCapacity } from './capacity.js';
import { safeJson } from './json.js';

export interface OpenSessionOptions {
  /** Stages whose claim to wait for; resolves early when all have acknowledged. */
  stages: readonly string[];
  timeoutMs?: number;
  /** Park an ownerless lease for a stage that did not claim in time (default true). */
  park?: boolean;
}

/**
 * Opens a session on every stage (one instance per stage claims it) and collects the claims.
 * Resolves with the acknowledgements that arrived. For a stage that did not answer in time (every instance
 * full, or none running yet) an ownerless lease is parked in KV: the first instance of that stage with room
 * claims it, so the session is not lost.
 */
export async function openSession(
  bus: Bus,
  sessionId: SessionId,
  config: z.input<typeof SessionConfig>,
  opts: OpenSessionOptions,
): Promise<SessionOpenAck[]> {
  const inbox = createInbox();
  const acks = new Map<string, SessionOpenAck>();
  const sub = bus.nc.subscribe(inbox);
  const timer = setTimeout(() => sub.unsubscribe(), opts.timeoutMs ?? 5000);
  const collected = (async () => {
    for await (const m of sub) {
      // Status messages (e.g. 503 no responders) have no body: the stages may simply not be subscribed yet.
      if (m.data.length === 0) continue;
      // An ack the server relayed (a JetStream delivery into this inbox) is not a stage's.
      if (serverRelay(m) !== undefined) continue;
      const ack = SessionOpenAck.safeParse(safeJson(m.data));
      if (!ack.success || ack.data.sessionId !== sessionId) continue;
      acks.set(ack.data.stage, ack.data);
      if (opts.stages.every((s) => acks.has(s))) break;
    }
  })();
  bus.publishGlobal(channels.sessionOpen, { sessionId, config }, { reply: inbox });
  await collected;
  clearTimeout(timer);
  sub.unsubscribe();
  const missing = opts.stages.filter((s) => !acks.has(s));
  if (missing.length > 0 && opts.park !== false) {
    const leases = await bus.kv(BUCKETS.leases);
    const parked = JSON.stringify({ owner: null, config: SessionConfig.parse(config) });
    // create() fails when the key exists: a stage that claimed late keeps its claim.
    await Promise.all(missing.map((stage) => leases.create(`${stage}.${sessionId}`, parked).catch(() => undefined)));
  }
  return [...acks.values()];
}

export function closeSession(bus: Bus, sessionId: SessionId, reason = 'closed'): void {
  bus.publishGlobal(channels.sessionClose, { sessionId, reason });
}

/** A session the pipeline cannot take now: which stage is full, and why (for the caller's answer and logs). */
export class SessionRefusedError extends Error {
  override readonly name = 'SessionRefusedError';
  constructor(
    readonly stage: string,
    readonly reason: string,
  ) {
    super(`session refused: ${reason}`);
  }
}

/** The refusal for the first of `stages` that has no instance with room, or undefined when each has one. */
export function fullStage(capacity: StageCapacity, stages: readonly string[]): SessionRefusedError | undefined {
  const full = capacity.full(stages);
  return full ? new SessionRefusedError(full, `${full} is full (every instance at capacity or overloaded)`) : undefined;
}

export interface AdmitSessionOptions extends OpenSessionOptions {
  /** Every stage's room from its heartbeats: a session some stage has no room for is refused at once. */
  capacity?: StageCapacity;
}

/**
 * Opens a session only if the pipeline can serve it: refused at once (SessionRefusedError) when every live
 * instance of some stage is full or overloaded, and refused — closed again on every stage — when some stage
 * does not claim it within the timeout. The sessions already running are never touched.
 */
export async function admitSession(
  bus: Bus,
  sessionId: SessionId,
  config: z.input<typeof SessionConfig>,
  opts: AdmitSessionOptions,
): Promise<SessionOpenAck[]> {
  const full = opts.capacity ? fullStage(opts.capacity, opts.stages) : undefined;
  if (full) throw full;
  const acks = await openSession(bus, sessionId, config, { ...opts, park: false });
  const missing = opts.stages.filter((s) => !acks.some((a) => a.stage === s));
  if (missing.length > 0) {
    // The stages that did claim it let it go.
    closeSession(bus, sessionId, 'refused');
    const timeoutMs = opts.timeoutMs ?? 5000;
    throw new SessionRefusedError(
      missing[0]!,
      `${missing.join(', ')} did not claim the session within ${timeoutMs} ms (full, or not running)`,
    );
  }
  return acks;
}
