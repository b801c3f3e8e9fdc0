import { ActorContext, ActorHost, openSession, type ActorFactory } from '@va/actor';
import { Bus } from '@va/bus';
import { BUCKETS, sessionId as parseSessionId, type SessionConfig, type SessionId } from '@va/protocol';
import type { z } from 'zod';
import { startNatsServer, type NatsServerHandle } from '@va/testkit';

export interface StageUnderTest {
  stage: string;
  createActor: ActorFactory;
}

/** Stages hosted in this process on a fresh nats-server, with a client bus to drive them. */
export interface InProcessStages {
  nats: NatsServerHandle;
  client: Bus;
  hosts: ActorHost[];
  /** Opens a session on every hosted stage and waits for their claims. */
  open(id: string, config?: z.input<typeof SessionConfig>): Promise<SessionId>;
  stop(): Promise<void>;
}

/** For a stage's own tests: its actor on a real bus, with nothing else of the pipeline around it. */
export async function startStagesInProcess(stages: readonly StageUnderTest[]): Promise<InProcessStages> {
  const nats = await startNatsServer();
  const client = await Bus.connect({ stage: 'test-client', servers: nats.url });
  const hosts: ActorHost[] = [];
  for (const { stage, createActor } of stages) {
    const host = new ActorHost({ stage, bus: await Bus.connect({ stage, servers: nats.url }), createActor });
    await host.start();
    hosts.push(host);
  }
  return {
    nats,
    client,
    hosts,
    open: async (id, config = {}) => {
      const sid = parseSessionId(id);
      await openSession(client, sid, config, { stages: stages.map((s) => s.stage) });
      await client.nc.flush();
      return sid;
    },
    stop: async () => {
      for (const h of hosts) await h.drain();
      await client.drain();
      await nats.stop();
    },
  };
}

/**
 * One session's actor context outside any host, following the session's control channel: for a stage a test
 * drives itself (the gateway, whose clock the test ticks).
 */
export async function detachedActorContext(
  bus: Bus,
  sessionId: SessionId,
  stage: string,
  config: SessionConfig = { sampleRate: 16000, language: 'en-US' },
): Promise<ActorContext> {
  const ctx = new ActorContext(sessionId, config, stage, bus, await bus.kv(BUCKETS.state), false, bus.log);
  ctx.followControl();
  return ctx;
}

/** One instance of a stage's actor host, on its own connection, that a test can crash (no handover). */
export interface ActorInstance {
  bus: Bus;
  host: ActorHost;
  /** The connection drops with no handover: the lease stays on this instance until it expires. */
  crash(): Promise<void>;
  /** Resolves once this instance has claimed the session and its subscriptions are on the server (call first). */
  claims(sessionId: SessionId): Promise<void>;
  stop(): Promise<void>;
}

/** For takeover tests: a short lease, so a crashed instance's sessions are re-claimed within half a second. */
export async function startActorInstance(opts: {
  stage: string;
  servers: string;
  createActor: ActorFactory;
  heartbeatMs?: number;
  leaseMs?: number;
}): Promise<ActorInstance> {
  const bus = await Bus.connect({ stage: opts.stage, servers: opts.servers });
  const host = new ActorHost({
    stage: opts.stage,
    bus,
    createActor: opts.createActor,
    heartbeatMs: opts.heartbeatMs ?? 100,
    leaseMs: opts.leaseMs ?? 400,
  });
  await host.start();
  return {
    bus,
    host,
    crash: async () => {
      await bus.close();
      // Only to clear the dead host's timers: its KV calls fail on the closed connection.
      await host.drain();
    },
    claims: (sid) =>
      new Promise<void>((resolve) => {
        // Announced once the actor is built; then its subscriptions are flushed to the server.
        const onClaim = (e: { sessionId: SessionId }) => {
          if (e.sessionId !== sid) return;
          host.off('claimed', onClaim);
          resolve(bus.nc.flush());
        };
        host.on('claimed', onClaim);
      }),
    stop: async () => {
      await host.drain();
      await bus.drain();
    },
  };
}
