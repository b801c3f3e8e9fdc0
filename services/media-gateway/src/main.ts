import { AgentStore } from '@va/agents';
import { loadMonitor, newInstanceId, parseEnv, StageCapacity, startServiceHealth } from '@va/actor';
import { Bus } from '@va/bus';
import { createLogger, shutdownTelemetry, startTelemetry } from '@va/telemetry';
import { STAGE } from './actor.js';
import { Admission } from './admission.js';
import { GatewayEnv } from './env.js';
import { parseLiveKitEnv, type LiveKitConfig } from './livekit/token.js';
import { forgetClosedSessions } from './open-session.js';
import { liveKitTransport, recordedTransport, webTransport, type Transport, type TransportDeps } from './transports.js';

const env = parseEnv(GatewayEnv);
if (env.GATEWAY_TRANSPORT === 'wav' && !env.GATEWAY_WAV === !env.GATEWAY_SCRIPT) {
  process.stderr.write('media-gateway (wav transport): set exactly one of GATEWAY_WAV or GATEWAY_SCRIPT\n');
  process.exit(2);
}
// Checked before anything starts: a bad LiveKit setting is a configuration error (exit 2), not a crash.
let liveKit: LiveKitConfig | undefined;
let startRooms: string[] = [];
if (env.GATEWAY_TRANSPORT === 'livekit') {
  try {
    liveKit = parseLiveKitEnv();
  } catch (err) {
    process.stderr.write(`media-gateway (livekit transport): ${(err as Error).message}\n`);
    process.exit(2);
  }
  const { RoomName } = await import('./livekit/dispatch.js');
  startRooms = env.LIVEKIT_ROOMS.split(',')
    .map((r) => r.trim())
    .filter((r) => r !== '');
  const bad = startRooms.filter((r) => !RoomName.safeParse(r).success);
  if (bad.length > 0) {
    process.stderr.write(
      `media-gateway (livekit transport): LIVEKIT_ROOMS has invalid room names (1-128 characters, no white space or control characters): ${bad.map((r) => JSON.stringify(r)).join(', ')}\n`,
    );
    process.exit(2);
  }
}

const instanceId = newInstanceId();
startTelemetry({ serviceName: STAGE, instanceId });
const log = createLogger(STAGE, { instanceId });
const bus = await Bus.connect({ stage: STAGE, instanceId, servers: env.NATS_URL, logger: log });
// A session closed elsewhere (an orphan whose gateway died) takes its gateway state with it.
await forgetClosedSessions(bus);
const load = loadMonitor(env).start(STAGE);
// Every stage's room from its heartbeats: a session is admitted only when each can take it.
const capacity = StageCapacity.watch(bus, { staleMs: env.GATEWAY_INSTANCE_STALE_MS, log });
const admission = new Admission(bus, {
  stages: env.GATEWAY_STAGES,
  openTimeoutMs: env.GATEWAY_OPEN_TIMEOUT_MS,
  capacity,
  load,
  log,
});
/** Set when SIGTERM/SIGINT arrives (readiness fails). */
let stopping = false;
const health = await startServiceHealth(env, STAGE, instanceId, log, () => {
  if (!bus.connected) return { ready: false, reason: 'nats disconnected', transport: env.GATEWAY_TRANSPORT };
  if (stopping) return { ready: false, reason: 'draining', transport: env.GATEWAY_TRANSPORT };
  return { ready: true, transport: env.GATEWAY_TRANSPORT };
});
/** Resolves at SIGTERM/SIGINT; readiness fails first, so no new browser or room is sent here. */
const stopped = new Promise<void>((resolve) => {
  const stop = () => {
    stopping = true;
    resolve();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
});

const deps: TransportDeps = {
  bus,
  instanceId,
  admission,
  agents: new AgentStore(bus),
  env,
  httpLimits: {
    headersTimeoutMs: env.GATEWAY_HTTP_HEADERS_TIMEOUT_MS,
    requestTimeoutMs: env.GATEWAY_HTTP_REQUEST_TIMEOUT_MS,
    maxConnections: env.GATEWAY_HTTP_MAX_CONNECTIONS,
  },
  log,
};
const transport: Transport =
  env.GATEWAY_TRANSPORT === 'web'
    ? webTransport(deps)
    : env.GATEWAY_TRANSPORT === 'livekit'
      ? liveKitTransport(deps, liveKit!, startRooms)
      : recordedTransport(deps);
const code = await transport.run(stopped);
capacity.stop();
load.stop();
await health?.close();
await bus.drain();
await shutdownTelemetry();
process.exit(code);
