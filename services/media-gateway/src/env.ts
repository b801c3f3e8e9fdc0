import { randomBytes } from 'node:crypto';
import { ServiceEnv } from '@va/actor';
import { STAGES } from '@va/protocol';
import { z } from 'zod';
import { HTTP_LIMITS_DEFAULTS } from './http-limits.js';
import { WEB_LIMITS_DEFAULTS } from './web/server.js';
import { RESUME_GRACE_MS } from './open-session.js';
import { ROOM_LEASE_DEFAULTS } from './livekit/room-leases.js';

/** The gateway's environment (README "How a stage runs"), checked at start. */
export const GatewayEnv = ServiceEnv.extend({
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
  GATEWAY_WEB_MAX_MESSAGES_PER_S: z.coerce.number().int().positive().default(WEB_LIMITS_DEFAULTS.maxMessagesPerSecond),
  /** A client that leaves this much unread is cut off. */
  GATEWAY_WEB_MAX_SEND_BUFFER_BYTES: z.coerce.number().int().positive().default(WEB_LIMITS_DEFAULTS.maxSendBufferBytes),
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
  /**
   * Signs the talk page's resume tokens: every gateway instance behind one address shares it, so a page whose
   * gateway died resumes its session on another (≥ 16 bytes). Unset: a random one per process (resume on the
   * same instance only).
   */
  GATEWAY_RESUME_SECRET: z.string().min(16).optional(),
  /** A session whose page lost its socket waits this long for the page to come back before it is closed. */
  GATEWAY_RESUME_GRACE_MS: z.coerce.number().int().min(0).default(RESUME_GRACE_MS),
  /** The agent a session runs when it names none (a profile in `va_agents`); unset: the stored `default`. */
  GATEWAY_AGENT: z.string().optional(),
  /** The talk page links each turn to its trace: `{traceId}` is replaced, e.g. Grafana's Explore on Tempo. */
  GATEWAY_TRACE_URL: z.string().url().optional(),
  /** The LiveKit transport's dispatch endpoint. */
  GATEWAY_HTTP_HOST: z.string().default('127.0.0.1'),
  GATEWAY_HTTP_PORT: z.coerce.number().int().min(0).max(65_535).default(8081),
  /**
   * LiveKit rooms are leased to one gateway instance (`va_leases`): renewed this often, and taken over by another
   * instance once not renewed for `GATEWAY_ROOM_LEASE_MS`.
   */
  GATEWAY_ROOM_RENEW_MS: z.coerce.number().int().positive().default(ROOM_LEASE_DEFAULTS.renewMs),
  GATEWAY_ROOM_LEASE_MS: z.coerce.number().int().positive().default(ROOM_LEASE_DEFAULTS.expireMs),
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
});
export type GatewayEnv = z.infer<typeof GatewayEnv>;
