import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  loadMonitor,
  newInstanceId,
  parseEnv,
  ServiceEnv,
  SessionRefusedError,
  StageCapacity,
  startServiceHealth,
} from '@va/actor';
import { readWav, resample } from '@va/audio';
import { Bus } from '@va/bus';
import { sessionId as parseSessionId, STAGES } from '@va/protocol';
import { createProvider } from '@va/providers';
import { createLogger, shutdownTelemetry, startTelemetry } from '@va/telemetry';
import { z } from 'zod';
import { STAGE } from './actor.js';
import { Admission } from './admission.js';
import { parseLiveKitEnv, type LiveKitConfig } from './livekit/token.js';
import { runRecordedSession } from './recorded-session.js';
import { Script, ScriptMic, WavMic, type MicSource } from './wav-transport.js';
import { HTTP_LIMITS_DEFAULTS } from './http-limits.js';
import { startWebServer, WEB_LIMITS_DEFAULTS } from './web/server.js';
import { busSessionFactory } from './web/session.js';

const env = parseEnv(
  ServiceEnv.extend({
    /**
     * `wav`: a recording or a script as the microphone (demo, tests, benchmarks); `web`: the browser talk page;
     * `livekit`: the agent in LiveKit rooms, sent there through the dispatch endpoint or `LIVEKIT_ROOMS`.
     */
    GATEWAY_TRANSPORT: z.enum(['wav', 'web', 'livekit']).default('wav'),
    GATEWAY_WEB_HOST: z.string().default('127.0.0.1'),
    GATEWAY_WEB_PORT: z.coerce.number().int().min(0).max(65_535).default(8080),
    /** Talk-page limits (README "Security"): sessions at once, and per client (IP address). */
    GATEWAY_WEB_MAX_SESSIONS: z.coerce.number().int().positive().default(WEB_LIMITS_DEFAULTS.maxSessions),
    GATEWAY_WEB_MAX_SESSIONS_PER_CLIENT: z.coerce
      .number()
      .int()
      .positive()
      .default(WEB_LIMITS_DEFAULTS.maxSessionsPerClient),
    /** New connections one client may open per minute. */
    GATEWAY_WEB_CONNECTS_PER_MINUTE: z.coerce.number().int().positive().default(WEB_LIMITS_DEFAULTS.connectsPerMinute),
    /** A socket that sends no microphone audio for this long is closed. */
    GATEWAY_WEB_IDLE_MS: z.coerce.number().int().positive().default(WEB_LIMITS_DEFAULTS.idleTimeoutMs),
    GATEWAY_WEB_PING_MS: z.coerce.number().int().positive().default(WEB_LIMITS_DEFAULTS.pingIntervalMs),
    /** Messages one socket may send per second (the page sends 50). */
    GATEWAY_WEB_MAX_MESSAGES_PER_S: z.coerce
      .number()
      .int()
      .positive()
      .default(WEB_LIMITS_DEFAULTS.maxMessagesPerSecond),
    /** A client that leaves this much unread is cut off. */
    GATEWAY_WEB_MAX_SEND_BUFFER_BYTES: z.coerce
      .number()
      .int()
      .positive()
      .default(WEB_LIMITS_DEFAULTS.maxSendBufferBytes),
    /** Host names the talk page is served under besides IP addresses and localhost, comma-separated. */
    GATEWAY_WEB_ALLOWED_HOSTS: z
      .string()
      .default('')
      .transform((v) =>
        v
          .split(',')
          .map((s) => s.trim())
          .filter((s) => s !== ''),
      ),
    /** `1` behind a reverse proxy: a client is the last address in X-Forwarded-For. */
    GATEWAY_WEB_TRUST_PROXY: z.enum(['0', '1']).default('0'),
    /** Every HTTP listener (talk page, dispatch): slow requests are cut off, connections are capped. */
    GATEWAY_HTTP_HEADERS_TIMEOUT_MS: z.coerce.number().int().positive().default(HTTP_LIMITS_DEFAULTS.headersTimeoutMs),
    GATEWAY_HTTP_REQUEST_TIMEOUT_MS: z.coerce.number().int().positive().default(HTTP_LIMITS_DEFAULTS.requestTimeoutMs),
    GATEWAY_HTTP_MAX_CONNECTIONS: z.coerce.number().int().positive().default(HTTP_LIMITS_DEFAULTS.maxConnections),
    /** The talk page links each turn to its trace: `{traceId}` is replaced, e.g. Grafana's Explore on Tempo. */
    GATEWAY_TRACE_URL: z.string().url().optional(),
    /** The LiveKit transport's dispatch endpoint. */
    GATEWAY_HTTP_HOST: z.string().default('127.0.0.1'),
    GATEWAY_HTTP_PORT: z.coerce.number().int().min(0).max(65_535).default(8081),
    /** Rooms the agent joins at start, comma-separated. */
    LIVEKIT_ROOMS: z.string().default(''),
    /** `1`: serve `GET /token` (client tokens for anyone who can reach the endpoint). */
    GATEWAY_TOKEN_ENDPOINT: z.enum(['0', '1']).default('0'),
    /** When set (non-empty), the dispatch endpoint requires `Authorization: Bearer <secret>`. */
    GATEWAY_DISPATCH_SECRET: z
      .string()
      .optional()
      .transform((s) => s || undefined),
    /** The microphone: a WAV file, or a script of utterances spoken by the local TTS. */
    GATEWAY_WAV: z.string().optional(),
    GATEWAY_SCRIPT: z.string().optional(),
    GATEWAY_OUT_DIR: z.string().default('out'),
    GATEWAY_SESSION_ID: z.string().default(`s-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`),
    GATEWAY_SAMPLE_RATE: z.coerce
      .number()
      .pipe(z.union([z.literal(16000), z.literal(24000), z.literal(48000)]))
      .default(16000),
    /** Concurrent sessions playing the same microphone (load runs); ids get `-<n>` appended when > 1. */
    GATEWAY_SESSIONS: z.coerce.number().int().positive().max(1000).default(1),
    /** Sessions start this far apart, so their turns do not all land on the same instant. */
    GATEWAY_STAGGER_MS: z.coerce.number().int().nonnegative().default(37),
    GATEWAY_RECORD_AUDIO: z.enum(['0', '1']).default('1'),
    /** `1`: the session file holds the conversation's words (the demo and the tests set it); off by default. */
    GATEWAY_RECORD_TEXT: z.enum(['0', '1']).default('0'),
    GATEWAY_TAIL_MS: z.coerce.number().int().positive().default(1000),
    GATEWAY_MAX_TAIL_MS: z.coerce.number().int().positive().default(30_000),
    /** Every stage must claim a new session within this, or the session is refused ("busy, try again"). */
    GATEWAY_OPEN_TIMEOUT_MS: z.coerce.number().int().positive().default(10_000),
    /** The stages of this agent, comma-separated: each must have room for a session to be admitted. */
    GATEWAY_STAGES: z
      .string()
      .default(STAGES.filter((s) => s !== 'media-gateway').join(','))
      .transform((v) =>
        v
          .split(',')
          .map((s) => s.trim())
          .filter((s) => s !== ''),
      )
      .pipe(z.array(z.enum(STAGES.filter((s) => s !== 'media-gateway') as [string, ...string[]])).min(1)),
    /** A stage instance not heard from for this long counts neither as room nor as full. */
    GATEWAY_INSTANCE_STALE_MS: z.coerce.number().int().positive().default(2_000),
  }),
);
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
const rate = env.GATEWAY_SAMPLE_RATE;
/** Set when SIGTERM/SIGINT arrives: readiness fails first, so no new browser or room is sent here. */
let stopping = false;
const health = await startServiceHealth(env, STAGE, instanceId, log, () => {
  if (!bus.connected) return { ready: false, reason: 'nats disconnected', transport: env.GATEWAY_TRANSPORT };
  if (stopping) return { ready: false, reason: 'draining', transport: env.GATEWAY_TRANSPORT };
  return { ready: true, transport: env.GATEWAY_TRANSPORT };
});
const onStop = (f: () => void) => {
  const stop = () => {
    stopping = true;
    f();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
};

const httpLimits = {
  headersTimeoutMs: env.GATEWAY_HTTP_HEADERS_TIMEOUT_MS,
  requestTimeoutMs: env.GATEWAY_HTTP_REQUEST_TIMEOUT_MS,
  maxConnections: env.GATEWAY_HTTP_MAX_CONNECTIONS,
};

if (env.GATEWAY_TRANSPORT === 'web') {
  // One session per browser tab, for as long as its socket is open.
  const web = await startWebServer({
    factory: busSessionFactory(bus, { admission, traceUrl: env.GATEWAY_TRACE_URL }),
    host: env.GATEWAY_WEB_HOST,
    port: env.GATEWAY_WEB_PORT,
    ...httpLimits,
    maxSessions: env.GATEWAY_WEB_MAX_SESSIONS,
    maxSessionsPerClient: env.GATEWAY_WEB_MAX_SESSIONS_PER_CLIENT,
    connectsPerMinute: env.GATEWAY_WEB_CONNECTS_PER_MINUTE,
    idleTimeoutMs: env.GATEWAY_WEB_IDLE_MS,
    pingIntervalMs: env.GATEWAY_WEB_PING_MS,
    maxMessagesPerSecond: env.GATEWAY_WEB_MAX_MESSAGES_PER_S,
    maxSendBufferBytes: env.GATEWAY_WEB_MAX_SEND_BUFFER_BYTES,
    allowedHosts: env.GATEWAY_WEB_ALLOWED_HOSTS,
    trustProxy: env.GATEWAY_WEB_TRUST_PROXY === '1',
    log,
  });
  log.info({ url: web.url }, 'talk page ready');
  await new Promise<void>((resolve) => onStop(resolve));
  await web.close();
  await health?.close();
  await bus.drain();
  await shutdownTelemetry();
  process.exit(0);
}

if (env.GATEWAY_TRANSPORT === 'livekit') {
  // Loaded here only: rtc-node brings its native library, which the other transports do not need.
  const { LiveKitDispatcher, startDispatchServer } = await import('./livekit/dispatch.js');
  const { busSessionFactory: liveKitSessionFactory } = await import('./livekit/session.js');
  const { dispose } = await import('@livekit/rtc-node');
  const stopped = new Promise<void>((resolve) => onStop(resolve));
  const dispatcher = new LiveKitDispatcher({
    config: liveKit!,
    openSession: liveKitSessionFactory(bus, { admission }),
    log,
  });
  const server = await startDispatchServer({
    dispatcher,
    host: env.GATEWAY_HTTP_HOST,
    port: env.GATEWAY_HTTP_PORT,
    tokenEndpoint: env.GATEWAY_TOKEN_ENDPOINT === '1',
    busy: () => admission.precheck(),
    ...(env.GATEWAY_DISPATCH_SECRET ? { secret: env.GATEWAY_DISPATCH_SECRET } : {}),
    httpLimits,
    log,
  }).catch((err: unknown) => {
    // Listening beyond loopback without a secret: refuse to start rather than open the door.
    log.error({ err: String(err) }, 'dispatch endpoint not started');
    process.exit(2);
  });
  if (env.GATEWAY_TOKEN_ENDPOINT === '1' && !env.GATEWAY_DISPATCH_SECRET) {
    log.warn({}, 'GET /token is open without GATEWAY_DISPATCH_SECRET: anyone who reaches the port can join rooms');
  }
  log.info({ url: server.url, identity: dispatcher.identity, livekitUrl: liveKit!.url }, 'dispatch endpoint ready');
  // Not awaited: a room that cannot be joined yet (LiveKit still starting) is tried again, backing off up to
  // 30 s, and one LiveKit puts the agent out of is joined again, until SIGTERM or a DELETE /dispatch/<room>.
  for (const room of startRooms) void dispatcher.keepJoined(room);
  await stopped;
  await server.close(); // leaves every room; their sessions close on the bus
  await health?.close();
  await bus.drain();
  await shutdownTelemetry();
  await dispose();
  process.exit(0);
}

// The microphone: a script spoken by the local TTS (paced by the conversation), or a recording.
let newMic: () => MicSource;
if (env.GATEWAY_SCRIPT) {
  const script = Script.parse(JSON.parse(await readFile(env.GATEWAY_SCRIPT, 'utf8')));
  newMic = await ScriptMic.prepare(script, await createProvider('tts', 'local'), rate);
} else {
  const pcm = await resample(readWav(await readFile(env.GATEWAY_WAV!)), rate);
  newMic = () => new WavMic(pcm);
}

const stop = new AbortController();
onStop(() => stop.abort());

const ids =
  env.GATEWAY_SESSIONS === 1
    ? [env.GATEWAY_SESSION_ID]
    : Array.from({ length: env.GATEWAY_SESSIONS }, (_, i) => `${env.GATEWAY_SESSION_ID}-${i}`);
const results = await Promise.allSettled(
  ids.map(async (id, i) => {
    await new Promise((r) => setTimeout(r, i * env.GATEWAY_STAGGER_MS));
    return runRecordedSession(bus, parseSessionId(id), newMic(), {
      sampleRate: rate,
      outDir: env.GATEWAY_OUT_DIR,
      recordAudio: env.GATEWAY_RECORD_AUDIO === '1',
      recordText: env.GATEWAY_RECORD_TEXT === '1',
      tailMs: env.GATEWAY_TAIL_MS,
      maxTailMs: env.GATEWAY_MAX_TAIL_MS,
      admission,
      signal: stop.signal,
    });
  }),
);
// A refused session (the pipeline was full) is an answer, not a failure: written down for the caller, exit 3.
const refused = results.flatMap((r, i) =>
  r.status === 'rejected' && r.reason instanceof SessionRefusedError
    ? [{ sessionId: ids[i]!, stage: r.reason.stage, reason: r.reason.reason }]
    : [],
);
if (refused.length > 0) await mkdir(env.GATEWAY_OUT_DIR, { recursive: true });
for (const r of refused) {
  await writeFile(join(env.GATEWAY_OUT_DIR, `${r.sessionId}.refused.json`), JSON.stringify(r));
}
const failed = results.filter((r) => r.status === 'rejected' && !(r.reason instanceof SessionRefusedError));
for (const f of failed) log.error({ err: (f as PromiseRejectedResult).reason }, 'session failed');
log.info({ sessions: ids.length, failed: failed.length, refused: refused.length }, 'all sessions finished');
capacity.stop();
load.stop();
await health?.close();
await bus.drain();
await shutdownTelemetry();
process.exit(failed.length > 0 ? 1 : refused.length > 0 ? 3 : 0);
