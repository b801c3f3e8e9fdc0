import { AccessToken, TrackSource, type VideoGrant } from 'livekit-server-sdk';
import { z } from 'zod';

/**
 * LiveKit server settings. The secret signs every token: it is never logged, and never part of an error
 * message (the schema's messages name the variable, not its value).
 */
export const LiveKitEnv = z.object({
  LIVEKIT_URL: z
    .string({ error: 'LIVEKIT_URL is required (ws://, wss://, http:// or https://)' })
    .regex(/^(wss?|https?):\/\/[^\s/]+/, 'LIVEKIT_URL must be a ws://, wss://, http:// or https:// URL'),
  LIVEKIT_API_KEY: z
    .string({ error: 'LIVEKIT_API_KEY is required' })
    .min(1, 'LIVEKIT_API_KEY is required')
    .regex(/^\S+$/, 'LIVEKIT_API_KEY may not contain white space'),
  // `livekit-server --dev` uses the secret "secret", so no minimum length beyond non-empty.
  LIVEKIT_API_SECRET: z
    .string({ error: 'LIVEKIT_API_SECRET is required' })
    .min(1, 'LIVEKIT_API_SECRET is required')
    .regex(/^\S+$/, 'LIVEKIT_API_SECRET may not contain white space'),
});

export interface LiveKitConfig {
  url: string;
  apiKey: string;
  apiSecret: string;
}

/** Reads the LiveKit settings; throws one Error naming every bad variable (never a value). */
export function parseLiveKitEnv(env: Record<string, string | undefined> = process.env): LiveKitConfig {
  const parsed = LiveKitEnv.safeParse({
    LIVEKIT_URL: env.LIVEKIT_URL,
    LIVEKIT_API_KEY: env.LIVEKIT_API_KEY,
    LIVEKIT_API_SECRET: env.LIVEKIT_API_SECRET,
  });
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => i.message);
    throw new Error(`LiveKit configuration: ${problems.join('; ')}`);
  }
  return {
    url: parsed.data.LIVEKIT_URL,
    apiKey: parsed.data.LIVEKIT_API_KEY,
    apiSecret: parsed.data.LIVEKIT_API_SECRET,
  };
}

/** Default lifetimes. A LiveKit token is only checked when joining (the server refreshes it afterwards). */
export const AGENT_TOKEN_TTL_S = 10 * 60;
export const CLIENT_TOKEN_TTL_S = 15 * 60;

export interface TokenOptions {
  /** Seconds until the token can no longer be used to join. */
  ttlSeconds?: number;
  name?: string;
}

/** The agent's identity in a room: `agent-<id>` (the gateway's id for the room, e.g. its session prefix). */
export function agentIdentity(id: string): string {
  return `agent-${id}`;
}

/**
 * The agent's grant: join this room only, publish microphone audio only (no camera, screen or data), and
 * subscribe to the user's audio. Not `hidden`: hidden participants are meant for recorders and observers,
 * they do not show in the room's participant list, and the user's client must see the agent (its voice,
 * and its kind `agent`) to render it. No `roomAdmin`, `roomCreate` or metadata updates either.
 */
export function agentGrant(room: string): VideoGrant {
  return {
    room,
    roomJoin: true,
    canPublish: true,
    canPublishSources: [TrackSource.MICROPHONE],
    canSubscribe: true,
    canPublishData: false,
    canUpdateOwnMetadata: false,
    hidden: false,
  };
}

/** The user's grant: join this room, publish the microphone only, hear the agent; no data, no admin. */
export function clientGrant(room: string): VideoGrant {
  return {
    room,
    roomJoin: true,
    canPublish: true,
    canPublishSources: [TrackSource.MICROPHONE],
    canSubscribe: true,
    canPublishData: false,
    canUpdateOwnMetadata: false,
  };
}

/** A token for the gateway's agent to join `room` as `agent-<id>`. */
export async function agentToken(
  cfg: LiveKitConfig,
  room: string,
  id: string,
  opts: TokenOptions = {},
): Promise<string> {
  const at = new AccessToken(cfg.apiKey, cfg.apiSecret, {
    identity: agentIdentity(id),
    name: opts.name ?? 'voice agent',
    ttl: opts.ttlSeconds ?? AGENT_TOKEN_TTL_S,
  });
  // Shown to clients as a participant of kind AGENT.
  at.kind = 'agent';
  at.addGrant(agentGrant(room));
  return at.toJwt();
}

/** A token for a user's client to join `room` as `identity`. */
export async function clientToken(
  cfg: LiveKitConfig,
  room: string,
  identity: string,
  opts: TokenOptions = {},
): Promise<string> {
  if (identity.startsWith('agent-')) throw new Error('a client identity may not start with "agent-"');
  const at = new AccessToken(cfg.apiKey, cfg.apiSecret, {
    identity,
    ttl: opts.ttlSeconds ?? CLIENT_TOKEN_TTL_S,
    ...(opts.name === undefined ? {} : { name: opts.name }),
  });
  at.addGrant(clientGrant(room));
  return at.toJwt();
}
