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
