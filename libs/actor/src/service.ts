import { Bus, natsAuthFromEnv, type NatsAuth } from '@va/bus';
import { createLogger, shutdownTelemetry, startTelemetry, type Logger } from '@va/telemetry';
import { z } from 'zod';
import { startHealthServer, type HealthServer, type Readiness } from './health.js';
import { ACTOR_HOST_DEFAULTS, ActorHost, newInstanceId, type ActorFactory } from './host.js';
import { LOAD_DEFAULTS, LoadMonitor } from './load.js';

/** Environment every service reads (zod-parsed: a bad value stops start-up with a clear message). */
export const ServiceEnv = z.object({
  NATS_URL: z.string().default('nats://127.0.0.1:4222'),
  /**
   * Credentials (deploy/nats/auth.conf has one user per stage): NATS_USER with NATS_PASSWORD or
   * NATS_PASSWORD_FILE, or NATS_TOKEN, or NATS_CREDS (a creds file). NATS_INBOX_PREFIX overrides the reply
   * inbox prefix, which otherwise follows the user.
   */
  NATS_USER: z.string().optional(),
  NATS_PASSWORD: z.string().optional(),
  NATS_PASSWORD_FILE: z.string().optional(),
  NATS_TOKEN: z.string().optional(),
  NATS_CREDS: z.string().optional(),
  NATS_INBOX_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)*$/, 'a subject without wildcards')
    .optional(),
  VA_SESSION_CAPACITY: z.coerce.number().int().positive().default(ACTOR_HOST_DEFAULTS.capacity),
  VA_HEARTBEAT_MS: z.coerce.number().int().positive().default(ACTOR_HOST_DEFAULTS.heartbeatMs),
  VA_LEASE_MS: z.coerce.number().int().positive().default(ACTOR_HOST_DEFAULTS.leaseMs),
  VA_HANDOVER_TIMEOUT_MS: z.coerce.number().int().nonnegative().default(ACTOR_HOST_DEFAULTS.handoverTimeoutMs),
  VA_SHUTDOWN_TIMEOUT_MS: z.coerce.number().int().positive().default(20_000),
  /** `/healthz` and `/readyz` for orchestrators; off unless set (the container images set 8090). */
  VA_HEALTH_PORT: z.coerce.number().int().min(0).max(65_535).optional(),
  VA_HEALTH_HOST: z.string().default('0.0.0.0'),
  /**
   * Load-aware admission: over either limit (event-loop delay p99 in ms, CPU in cores; 0 = no CPU limit) for a
   * window of VA_LOAD_WINDOW_MS, the instance claims no new session until it is calm again.
   */
  VA_LOAD_MAX_EVENT_LOOP_DELAY_MS: z.coerce.number().positive().default(LOAD_DEFAULTS.maxEventLoopDelayMs),
  VA_LOAD_MAX_CPU: z.coerce.number().nonnegative().default(LOAD_DEFAULTS.maxCpu),
  VA_LOAD_WINDOW_MS: z.coerce.number().int().min(100).default(LOAD_DEFAULTS.windowMs),
});
export type ServiceEnv = z.infer<typeof ServiceEnv>;

/** Parses the environment with a schema; on failure prints what is wrong and exits 2. */
export function parseEnv<S extends z.ZodType>(schema: S, env: NodeJS.ProcessEnv = process.env): z.output<S> {
  const result = schema.safeParse(env);
  if (!result.success) {
    const lines = result.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`).join('\n');
    process.stderr.write(`invalid configuration:\n${lines}\n`);
    process.exit(2);
  }
  return result.data;
}

/** The bus credentials of a parsed environment; a contradictory setting exits 2 like any bad configuration. */
export function natsAuth(env: ServiceEnv): NatsAuth {
  try {
    return natsAuthFromEnv(env);
  } catch (err) {
    process.stderr.write(`invalid configuration:\n  ${(err as Error).message}\n`);
    process.exit(2);
  }
}

export interface RunServiceOptions {
  stage: string;
  createActor: ActorFactory;
  /** Runs once the bus is connected, before any session is claimed (e.g. to open what every session shares). */
  prepare?: (bus: Bus) => Promise<void> | void;
  version?: string;
  env?: ServiceEnv;
}

/**
 * The standard wiring of a stage service: telemetry, bus, actor host, and a graceful SIGTERM/SIGINT
 * (hand sessions over, drain the bus, flush telemetry, exit 0).
 */
export async function runService(opts: RunServiceOptions): Promise<{ host: ActorHost; bus: Bus }> {
  const env = opts.env ?? parseEnv(ServiceEnv);
  const instanceId = newInstanceId();
  startTelemetry({ serviceName: opts.stage, instanceId, ...(opts.version ? { version: opts.version } : {}) });
  const log = createLogger(opts.stage, { instanceId });
  // A bug in one session's handler must not take the other sessions down with the process.
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));
  const bus = await Bus.connect({
    stage: opts.stage,
    instanceId,
    servers: env.NATS_URL,
    logger: log,
    auth: natsAuth(env),
  });
  await opts.prepare?.(bus);
  const load = loadMonitor(env).start(opts.stage);
  const host = new ActorHost({
    load,
    stage: opts.stage,
    bus,
    createActor: opts.createActor,
    instanceId,
    capacity: env.VA_SESSION_CAPACITY,
    heartbeatMs: env.VA_HEARTBEAT_MS,
    leaseMs: env.VA_LEASE_MS,
    handoverTimeoutMs: env.VA_HANDOVER_TIMEOUT_MS,
    logger: log,
    ...(opts.version ? { version: opts.version } : {}),
  });
  await host.start();
  const health = await startServiceHealth(env, opts.stage, instanceId, log, () => {
    const status = { ...host.status, ...processDetails(bus) };
    if (!bus.connected) return { ready: false, reason: 'nats disconnected', ...status };
    if (status.draining) return { ready: false, reason: 'draining', ...status };
    return { ready: true, ...status };
  });

  let stopping = false;
  const shutdown = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    const force = setTimeout(() => {
      log.error('shutdown timed out');
      process.exit(1);
    }, env.VA_SHUTDOWN_TIMEOUT_MS);
    force.unref();
    load.stop();
    try {
      await host.drain();
      await bus.drain();
    } catch (err) {
      log.error({ err }, 'drain failed');
    }
    await health?.close();
    await shutdownTelemetry();
    log.info('stopped');
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));
  return { host, bus };
}

/** This process's load monitor, with the limits of its environment. */
export function loadMonitor(
  env: Pick<ServiceEnv, 'VA_LOAD_MAX_EVENT_LOOP_DELAY_MS' | 'VA_LOAD_MAX_CPU' | 'VA_LOAD_WINDOW_MS'>,
): LoadMonitor {
  return new LoadMonitor({
    maxEventLoopDelayMs: env.VA_LOAD_MAX_EVENT_LOOP_DELAY_MS,
    maxCpu: env.VA_LOAD_MAX_CPU,
    windowMs: env.VA_LOAD_WINDOW_MS,
  });
}

/** The health endpoint when `VA_HEALTH_PORT` is set (services that wire themselves, like the gateway, use it too). */
export async function startServiceHealth(
  env: Pick<ServiceEnv, 'VA_HEALTH_PORT' | 'VA_HEALTH_HOST'>,
  stage: string,
  instanceId: string,
  log: Logger,
  readiness: () => Readiness,
): Promise<HealthServer | undefined> {
  if (env.VA_HEALTH_PORT === undefined) return undefined;
  return startHealthServer({ port: env.VA_HEALTH_PORT, host: env.VA_HEALTH_HOST, stage, instanceId, readiness, log });
}

/**
 * What a leak shows in, for readiness details: the V8 heap in use, the NATS subscriptions of this process's
 * connection (sessions' own and the host's), and the handles and requests keeping its event loop busy (timers,
 * sockets, workers). Each returns to its idle value once the sessions close.
 */
export function processDetails(bus: Bus): { heapUsedBytes: number; subscriptions: number; activeResources: number } {
  // nats.js keeps its subscriptions in the protocol handler; the public API has no count of them.
  const subs = (bus.nc as unknown as { protocol?: { subscriptions?: { size(): number } } }).protocol?.subscriptions;
  return {
    heapUsedBytes: process.memoryUsage().heapUsed,
    subscriptions: subs?.size() ?? -1,
    activeResources: process.getActiveResourcesInfo().length,
  };
}
