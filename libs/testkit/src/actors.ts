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

/**
 * For takeover tests: a nats-server, a client, and instances of a stage with a short lease (a crashed instance's
 * sessions are re-claimed within half a second). Call `stopInstances` after each test and `stop` after all.
 */
export class ActorInstances {
  private readonly running = new Set<ActorInstance>();

  private constructor(
    readonly nats: NatsServerHandle,
    readonly client: Bus,
  ) {}

  static async start(): Promise<ActorInstances> {
    const nats = await startNatsServer();
    return new ActorInstances(nats, await Bus.connect({ stage: 'test-client', servers: nats.url }));
  }

  /** One more instance of a stage, on its own connection. */
  async add(stage: string, createActor: ActorFactory): Promise<ActorInstance> {
    const bus = await Bus.connect({ stage, servers: this.nats.url });
    const host = new ActorHost({ stage, bus, createActor, heartbeatMs: 100, leaseMs: 400 });
    await host.start();
    const instance: ActorInstance = {
      bus,
      host,
      crash: async () => {
        this.running.delete(instance);
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
        this.running.delete(instance);
        await host.drain();
        await bus.drain();
      },
    };
    this.running.add(instance);
    return instance;
  }

  /** Opens a session on `stages` (flushed: the claims are made when this returns). */
  async open(id: string, config: z.input<typeof SessionConfig>, stages: readonly string[]): Promise<SessionId> {
    const sid = parseSessionId(id);
    await openSession(this.client, sid, config, { stages });
    await this.client.nc.flush();
    return sid;
  }

  async stopInstances(): Promise<void> {
    for (const i of [...this.running]) await i.stop();
  }

  async stop(): Promise<void> {
    await this.stopInstances();
    await this.client.drain();
    await this.nats.stop();
  }
}
